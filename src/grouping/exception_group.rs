//! Exception groups (RFC 0079): the distinct top-level exceptions to hash, and the main exception to title after.

// An exception group arrives as a flat list whose `mechanism.exception_id` / `parent_id` form a
// tree with the root (id 0) usually last. What identifies the problem is the "top-level"
// exceptions: the children of groups that are not groups themselves. As Sentry does
// (`filter_exceptions_for_exception_groups`): when they are all alike (`Group[E, E, E]`) the
// event hashes as that one exception and the path of first children below it, and is titled
// after it; when they differ it hashes as one of each (sorted by type, descending) plus the root
// group, and keeps its usual title. Anything malformed (a missing or repeated id, an exception
// that does not reach the root through its parents (a parent missing or naming no exception, a
// cycle, the root having a parent), no root, no top-level exception) leaves the list as it is,
// as Sentry does with trees it cannot build. Sentry removes only adjacent duplicates after its
// sort; we remove all of them. Unlike Sentry, a chain where no exception is marked
// `is_exception_group` is left alone even when it carries ids: Sentry reorders such chains (and
// exempts Python SDK 3 for it); we keep their hashes.
//
// The ids are client input, so the work is linear in the number of exceptions (each visited
// once, keys compared by hash), and lists longer than `MAX_GROUP_EXCEPTIONS` are not reduced
// at all: every top-level exception costs a hashed stack trace, and this runs for every scheme
// (titles) on every event.

use std::collections::{HashMap, HashSet};

use super::rules::Enhancements;
use super::tree::{Hasher, Tree, APP, SYSTEM};
use super::{add_exception, Flags, Scheme};
use crate::protocol::event::{Event, Exception};

/// Exception lists longer than this hash (and are titled) as plain chains: real groups are far
/// smaller (the JavaScript SDK links at most 5 errors by default).
const MAX_GROUP_EXCEPTIONS: usize = 256;

/// What an exception group reduces to.
pub(super) struct Reduced {
    /// Indexes into `event.exception`, in hashing order.
    pub order: Vec<usize>,
    /// The exception the issue is named after, when the group has one distinct kind.
    pub main: Option<usize>,
}

/// The reduced exception list, or `None` when the exceptions are no (valid) exception group.
pub(super) fn reduce(
    event: &Event<'_>,
    platform: &str,
    rules: Option<&Enhancements>,
    flags: Flags,
) -> Option<Reduced> {
    let exceptions = &event.exception.0;
    // Only real exception groups: plain chains that carry ids (Python SDKs send them) keep their
    // order, and their hashes stay those of the chain.
    let is_group = |e: &Exception<'_>| {
        e.mechanism
            .as_ref()
            .and_then(|m| m.is_exception_group.0)
            .unwrap_or(false)
    };
    if exceptions.len() > MAX_GROUP_EXCEPTIONS || !exceptions.iter().any(is_group) {
        return None;
    }
    let tree = GroupTree::build(exceptions)?;
    let mut top = tree.top_levels(exceptions);
    if top.is_empty() {
        return None;
    }
    let ty = |i: usize| exceptions[i].ty.as_deref().unwrap_or("");
    top.sort_by(|&a, &b| ty(b).cmp(ty(a)));
    let mut keys: HashSet<[String; 2]> = HashSet::with_capacity(top.len());
    let mut distinct = Vec::with_capacity(top.len());
    for i in top {
        if keys.insert(exception_key(event, &exceptions[i], platform, rules, flags)) {
            distinct.push(i);
        }
    }
    if let [main] = distinct[..] {
        return Some(Reduced {
            order: tree.first_path(main, exceptions.len()),
            main: Some(main),
        });
    }
    distinct.push(tree.root);
    Some(Reduced {
        order: distinct,
        main: None,
    })
}

/// The exception an error issue is titled after: the one distinct exception of an exception
/// group, else the last (newest) exception. Titles are not hashes, so this holds for issues of
/// every scheme.
pub fn main_exception<'e, 'a>(event: &'e Event<'a>) -> Option<&'e Exception<'a>> {
    let exceptions = &event.exception.0;
    let flags = Scheme::LATEST.flags();
    let main =
        reduce(event, event.platform.as_deref().unwrap_or(""), None, flags).and_then(|r| r.main);
    match main {
        Some(i) => exceptions.get(i),
        None => exceptions.last(),
    }
}

/// What makes two top-level exceptions "the same": their hashes in both variants.
fn exception_key(
    event: &Event<'_>,
    exc: &Exception<'_>,
    platform: &str,
    rules: Option<&Enhancements>,
    flags: Flags,
) -> [String; 2] {
    let mut tree = Tree::new(false, 16);
    add_exception(&mut tree, event, exc, false, platform, rules, flags);
    [APP, SYSTEM].map(|v| {
        let mut h = Hasher::new();
        tree.feed(0, v, &mut h);
        h.finish()
    })
}

struct GroupTree {
    /// The exception with `exception_id` 0.
    root: usize,
    /// Children per exception index, in the order Sentry visits them (newest first).
    children: Vec<Vec<usize>>,
}

impl GroupTree {
    /// The tree the ids describe, or `None` unless every exception has a distinct id and
    /// reaches the root (id 0, without a parent) through its parents.
    fn build(exceptions: &[Exception<'_>]) -> Option<GroupTree> {
        if exceptions.len() <= 1 {
            return None;
        }
        let mut index_of: HashMap<i64, usize> = HashMap::with_capacity(exceptions.len());
        // Parent index per exception; `None` only for the root.
        let mut parents: Vec<Option<usize>> = vec![None; exceptions.len()];
        for (i, exc) in exceptions.iter().enumerate() {
            let id = exc.mechanism.as_ref()?.exception_id.as_i64()?;
            if index_of.insert(id, i).is_some() {
                return None;
            }
        }
        let root = *index_of.get(&0)?;
        for (i, exc) in exceptions.iter().enumerate() {
            match exc.mechanism.as_ref()?.parent_id.as_i64() {
                None if i == root => {}
                Some(p) if i != root => parents[i] = Some(*index_of.get(&p)?),
                _ => return None,
            }
        }
        if !reaches_root(&parents, root) {
            return None;
        }
        let mut children = vec![Vec::new(); exceptions.len()];
        for (i, parent) in parents.iter().enumerate().rev() {
            if let Some(p) = *parent {
                children[p].push(i);
            }
        }
        Some(GroupTree { root, children })
    }

    /// The non-group exceptions below groups, depth first from the root.
    fn top_levels(&self, exceptions: &[Exception<'_>]) -> Vec<usize> {
        let is_group = |i: usize| {
            exceptions[i]
                .mechanism
                .as_ref()
                .and_then(|m| m.is_exception_group.0)
                .unwrap_or(false)
        };
        let mut out = Vec::new();
        // `build` guarantees a tree; the mark only makes "each node once" independent of it.
        let mut seen = vec![false; exceptions.len()];
        let mut stack = vec![self.root];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if is_group(i) {
                // Reversed, so the first child is popped (visited) first.
                stack.extend(self.children[i].iter().rev());
            } else {
                out.push(i);
            }
        }
        out
    }

    /// `i`, its first child, that one's first child, ... (at most `limit` long).
    fn first_path(&self, mut i: usize, limit: usize) -> Vec<usize> {
        let mut path = vec![i];
        while let Some(&c) = self.children[i].first() {
            if path.len() >= limit || path.contains(&c) {
                break;
            }
            path.push(c);
            i = c;
        }
        path
    }
}

/// Whether every exception reaches `root` by following `parents`: false on any cycle. Linear:
/// each walk stops at the first exception already known to reach the root.
fn reaches_root(parents: &[Option<usize>], root: usize) -> bool {
    let mut reaches = vec![false; parents.len()];
    reaches[root] = true;
    // Exceptions on the current walk; meeting one again is a cycle.
    let mut on_walk = vec![false; parents.len()];
    let mut walk = Vec::new();
    for start in 0..parents.len() {
        let mut i = start;
        while !reaches[i] {
            if std::mem::replace(&mut on_walk[i], true) {
                return false;
            }
            walk.push(i);
            match parents[i] {
                Some(p) => i = p,
                None => return false,
            }
        }
        for j in walk.drain(..) {
            reaches[j] = true;
        }
    }
    true
}

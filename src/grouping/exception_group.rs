//! Exception groups (RFC 0079): the distinct top-level exceptions to hash, and the main exception to title after.

// An exception group arrives as a flat list whose `mechanism.exception_id` / `parent_id` form a
// tree with the root (id 0) usually last. What identifies the problem is the "top-level"
// exceptions: the children of groups that are not groups themselves. As Sentry does
// (`filter_exceptions_for_exception_groups`): when they are all alike (`Group[E, E, E]`) the
// event hashes as that one exception and the path of first children below it, and is titled
// after it; when they differ it hashes as one of each (sorted by type, descending) plus the root
// group, and keeps its usual title. Anything malformed (a missing or repeated id, an exception
// that is its own parent, no root, no top-level exception) leaves the list as it is. Sentry
// removes only adjacent duplicates after its sort; we remove all of them. Unlike Sentry, a chain
// where no exception is marked `is_exception_group` is left alone even when it carries ids:
// Sentry reorders such chains (and exempts Python SDK 3 for it); we keep their hashes.

use super::rules::Enhancements;
use super::tree::{Hasher, Tree, APP, SYSTEM};
use super::{add_exception, Flags, Scheme};
use crate::protocol::event::{Event, Exception};

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
    if !exceptions.iter().any(is_group) {
        return None;
    }
    let tree = GroupTree::build(exceptions)?;
    let mut top = Vec::new();
    tree.top_levels(exceptions, tree.root, 0, &mut top);
    if top.is_empty() {
        return None;
    }
    let ty = |i: usize| exceptions[i].ty.as_deref().unwrap_or("");
    top.sort_by(|&a, &b| ty(b).cmp(ty(a)));
    let mut keys: Vec<[String; 2]> = Vec::with_capacity(top.len());
    let mut distinct = Vec::with_capacity(top.len());
    for i in top {
        let key = exception_key(event, &exceptions[i], platform, rules, flags);
        if !keys.contains(&key) {
            keys.push(key);
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
    fn build(exceptions: &[Exception<'_>]) -> Option<GroupTree> {
        if exceptions.len() <= 1 {
            return None;
        }
        let mut ids: Vec<(i64, usize)> = Vec::with_capacity(exceptions.len());
        for (i, exc) in exceptions.iter().enumerate().rev() {
            let m = exc.mechanism.as_ref()?;
            let id = m.exception_id.as_i64()?;
            if m.parent_id.as_i64() == Some(id) || ids.iter().any(|(x, _)| *x == id) {
                return None;
            }
            ids.push((id, i));
        }
        let index_of = |id: i64| ids.iter().find(|(x, _)| *x == id).map(|(_, i)| *i);
        let mut children = vec![Vec::new(); exceptions.len()];
        for (i, exc) in exceptions.iter().enumerate().rev() {
            let parent = exc.mechanism.as_ref().and_then(|m| m.parent_id.as_i64());
            if let Some(p) = parent.and_then(index_of) {
                children[p].push(i);
            }
        }
        Some(GroupTree {
            root: index_of(0)?,
            children,
        })
    }

    /// The non-group exceptions below groups, depth first; `depth` guards against cycles.
    fn top_levels(
        &self,
        exceptions: &[Exception<'_>],
        i: usize,
        depth: usize,
        out: &mut Vec<usize>,
    ) {
        if depth > exceptions.len() {
            return;
        }
        let is_group = exceptions[i]
            .mechanism
            .as_ref()
            .and_then(|m| m.is_exception_group.0)
            .unwrap_or(false);
        if is_group {
            for &c in &self.children[i] {
                self.top_levels(exceptions, c, depth + 1, out);
            }
        } else {
            out.push(i);
        }
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

//! Grouping hashes for events: Sentry's "newstyle" grouping (reference section 6) in versioned schemes, SHA-256 based.

// The algorithm, in short: a `checksum` wins outright; otherwise the fingerprint (a project's
// fingerprinting rule replaces the event's own) decides between a custom hash and the default
// components. The strategies (chained exceptions, threads, top-level stacktrace, message) are
// tried in priority order and the first one with any contributing component wins. It yields two
// variants, `app` (in-app frames only) and `system` (all frames), which a hybrid fingerprint
// salts. Stack trace rules (a project's `Enhancements`) move frames in or out of the app and
// switch frames on or off before any of this.
//
// Schemes. Hashes are stored with the id of the scheme that made them, and a scheme never
// changes once released: `sh-2026-11` is frozen by a golden test. Schemes differ only by the
// `Flags` below, read by the one shared algorithm (as Sentry's grouping configs do).
// `sh-2026-12` adds:
// - the variant rule (reference 6.1 step 4): when any variant has a contributing stack trace,
//   a variant without one yields no hash. Otherwise an exception with frames but no in-app
//   frames got an `app` hash of type+value that every crash of that kind shares (every
//   `SIGSEGV: Segfault`), and "any hash joins" merged them all;
// - native function names trimmed like Sentry's `trim_function_name` (return types,
//   qualifiers, lambdas, Swift closures), the `symbol` as a name of last resort, and the
//   basename of `package` for frames that have nothing else (unsymbolicated native frames);
// - an exception without frames takes the stack of the thread its `thread_id` names, else (the
//   main exception) the crashed thread's: Cocoa and minidump events put the stack there;
// - exception groups (RFC 0079) reduced to their distinct top-level exceptions.
// Where both schemes compute the same components they produce the same hash strings, so most
// events hash alike under both.
//
// One decision path. The strategies build a component tree (`tree.rs`) shared by both variants;
// `hashes()` hashes its contributing leaves and `info()` renders the same tree, so the
// explanation and the hashes cannot disagree.
//
// Hash bytes. Every hash is the first 16 bytes of SHA-256 (32 lowercase hex chars) over a list of
// labelled items. Each item is fed as `label`, a 0x00 byte, the value's byte length as a
// little-endian u64, then the value's bytes. Labels are static and never contain 0x00, and the
// length prefix delimits the value, so the encoding is unambiguous even for values that contain
// 0x00: `["ab","c"]` and `["a","bc"]` differ, and so do two frames `[module]`,`[function]` versus
// one frame `[module, function]` (each frame and exception also starts with a marker item).
// The labels include the winning strategy's name, so a message "X" never collides with an
// exception type "X". None of this is byte-compatible with Sentry's MD5 hashes; it does not need
// to be.

use crate::protocol::event::{Event, Exception, Stacktrace, Thread};
use std::borrow::Cow;
use tree::{hash_one, Hasher, Hint, Tree, APP, SYSTEM};

mod exception_group;
mod fingerprint;
mod frames;
mod info;
mod message;
pub mod rules;
mod tree;

pub use exception_group::main_exception;
pub use fingerprint::crash_frame;
pub use info::{Component, ComponentValue, Info, SchemeRef, Variant};
pub use message::normalize_message;

/// A grouping algorithm version; its id is stored next to every hash it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Frozen: the hashes of databases written before 2026-12.
    V2026_11,
    #[default]
    V2026_12,
}

impl Scheme {
    pub const LATEST: Scheme = Scheme::V2026_12;

    pub fn id(self) -> &'static str {
        match self {
            Scheme::V2026_11 => "sh-2026-11",
            Scheme::V2026_12 => "sh-2026-12",
        }
    }

    pub fn from_id(id: &str) -> Option<Scheme> {
        Scheme::all().iter().copied().find(|s| s.id() == id)
    }

    pub fn all() -> &'static [Scheme] {
        &[Scheme::V2026_11, Scheme::V2026_12]
    }

    fn flags(self) -> Flags {
        let new = self != Scheme::V2026_11;
        Flags {
            stack_variants_win: new,
            native_names: new,
            package_fallback: new,
            thread_stacks: new,
            exception_groups: new,
        }
    }
}

/// What distinguishes the schemes; shared code reads these instead of the scheme itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flags {
    /// Variants without a contributing stack give way when another variant has one.
    pub stack_variants_win: bool,
    /// `trim_native_function_v2` and the `symbol` fallback for native frames.
    pub native_names: bool,
    /// A native frame with nothing else contributes the basename of its `package`.
    pub package_fallback: bool,
    /// An exception without frames takes its thread's (or the crashed thread's) stack.
    pub thread_stacks: bool,
    /// Exception groups are reduced to their distinct top-level exceptions.
    pub exception_groups: bool,
}

/// What a project groups with: a scheme and its own rules.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub scheme: Scheme,
    pub fingerprinting: Option<std::sync::Arc<rules::FingerprintRules>>,
    pub enhancements: Option<std::sync::Arc<rules::Enhancements>>,
}

/// Grouping hashes of `event`, highest priority first, without duplicates; never empty.
///
/// Order: checksum alone; or the custom fingerprint alone; or `app` then `system` (both salted
/// with the other fingerprint entries when the fingerprint is hybrid). A `system` variant that
/// hashes like `app` is dropped. When nothing contributes, one fixed fallback hash is returned so
/// every event still lands in some issue.
pub fn hashes(event: &Event<'_>, config: &Config) -> Vec<String> {
    group(event, config, false)
        .variants
        .into_iter()
        .filter_map(|v| v.hash)
        .collect()
}

/// The variants of `event` by key (`app`, `system`, `default`, `custom_fingerprint`,
/// `checksum`, `fallback`), each with its hash or `None` when it does not contribute; the
/// hashes are those of `hashes()`, in the same order. A grouping transition needs to know which
/// variant a hash came from (`project_grouping`).
pub fn variant_hashes(event: &Event<'_>, config: &Config) -> Vec<(&'static str, Option<String>)> {
    group(event, config, false)
        .variants
        .into_iter()
        .map(|v| (v.key, v.hash))
        .collect()
}

/// The explanation of `hashes(event, config)`: the same computation, with its component tree.
pub fn info(event: &Event<'_>, config: &Config) -> Info {
    info::render(group(event, config, true), config.scheme)
}

/// One variant of an outcome, before rendering.
pub(crate) struct VariantOut {
    key: &'static str,
    kind: &'static str,
    /// The tree variant (`APP` / `SYSTEM`) shown as its component, if any.
    tree_variant: Option<usize>,
    /// `None` when the variant does not contribute.
    hash: Option<String>,
    hint: Option<Hint>,
    /// The resolved fingerprint (custom and salted variants) or the checksum; explain only.
    values: Option<Vec<String>>,
}

/// Everything one grouping decided; `hashes()` keeps the hashes, `info()` renders it all.
pub(crate) struct Outcome<'e> {
    tree: Option<Tree<'e>>,
    /// The winning strategy's description (`exception`, `threads`, ...).
    strategy: &'static str,
    variants: Vec<VariantOut>,
    /// The fingerprint entries used, unresolved (explain only).
    fingerprint: Vec<String>,
    matched_rule: Option<String>,
    rule_title: Option<String>,
}

fn group<'e>(event: &'e Event<'_>, config: &'e Config, explain: bool) -> Outcome<'e> {
    let flags = config.scheme.flags();
    let mut out = Outcome {
        tree: None,
        strategy: "",
        variants: Vec::with_capacity(2),
        fingerprint: Vec::new(),
        matched_rule: None,
        rule_title: None,
    };

    if let Some(checksum) = event.checksum.non_empty() {
        // Hashed even when it already looks like an MD5 hex digest, so every stored hash has one
        // format and a client cannot pick a value that collides with our own hashes.
        out.variants.push(VariantOut {
            key: "checksum",
            kind: "checksum",
            tree_variant: None,
            hash: Some(hash_one("checksum", checksum)),
            hint: None,
            values: explain.then(|| vec![checksum.to_owned()]),
        });
        return out;
    }

    // A project's fingerprinting rule replaces the event's own fingerprint (server rules win).
    let matched = config
        .fingerprinting
        .as_deref()
        .and_then(|rules| rules.matching(event));
    let entries: Vec<&str> = match &matched {
        Some(m) => m.entries.iter().map(String::as_str).collect(),
        None => event.fingerprint.0.iter().map(|e| e.as_ref()).collect(),
    };
    if explain {
        out.fingerprint = if entries.is_empty() {
            vec!["{{ default }}".to_owned()]
        } else {
            entries.iter().map(|e| e.to_string()).collect()
        };
        if let Some(m) = &matched {
            out.matched_rule = Some(m.rule.to_owned());
            out.rule_title = m.title.map(str::to_owned);
        }
    }
    let is_default = |e: &str| fingerprint::fingerprint_var(e) == Some("default");
    let has_default = entries.iter().any(|e| is_default(e));
    let all_default = entries.iter().all(|e| is_default(e));
    let resolved = |with_default: &str| -> Vec<String> {
        entries
            .iter()
            .map(|e| match is_default(e) {
                true => with_default.to_owned(),
                false => fingerprint::resolve_fingerprint_entry(event, e).into_owned(),
            })
            .collect()
    };

    let custom = !has_default && !entries.is_empty();
    if custom {
        // Custom fingerprint: the default grouping is computed only to be explained.
        let mut h = Hasher::new();
        for e in &entries {
            h.item(
                "fingerprint",
                &fingerprint::resolve_fingerprint_entry(event, e),
            );
        }
        out.variants.push(VariantOut {
            key: "custom_fingerprint",
            kind: "custom_fingerprint",
            tree_variant: None,
            hash: Some(h.finish()),
            hint: None,
            values: explain.then(|| resolved("")),
        });
        if !explain {
            return out;
        }
    }

    if let Some((tree, strategy)) = strategies(event, config, flags, explain) {
        let keys: &[(&'static str, usize)] = if strategy == "message" {
            // Message grouping has no app/system distinction: one `default` variant.
            &[("default", APP)]
        } else {
            &[("app", APP), ("system", SYSTEM)]
        };
        for &(key, v) in keys {
            let mut variant = VariantOut {
                key,
                kind: if all_default {
                    "component"
                } else {
                    "salted_component"
                },
                tree_variant: Some(v),
                hash: None,
                hint: None,
                values: None,
            };
            if custom {
                variant.kind = "component";
                variant.hint = Some("custom fingerprint takes precedence".into());
            } else if !tree.nodes[0].on[v] {
                variant.hint = tree.hint(0, v).map(|h| Cow::Owned(h.to_owned()));
            } else {
                let mut h = Hasher::new();
                if all_default {
                    // Covers an absent/empty fingerprint and `["{{ default }}"]` alone.
                    tree.feed(0, v, &mut h);
                } else {
                    // Hybrid: this variant's values in place of `{{ default }}`, in entry order.
                    for e in &entries {
                        if is_default(e) {
                            tree.feed(0, v, &mut h);
                        } else {
                            h.item(
                                "fingerprint",
                                &fingerprint::resolve_fingerprint_entry(event, e),
                            );
                        }
                    }
                    if explain {
                        variant.values = Some(resolved("{{ default }}"));
                    }
                }
                let hash = h.finish();
                match out.variants.iter().find(|o| o.hash.as_ref() == Some(&hash)) {
                    Some(same) => {
                        let other = same.key;
                        variant.hint =
                            Some(format!("ignored because hash matches {other} variant").into());
                    }
                    None => variant.hash = Some(hash),
                }
            }
            out.variants.push(variant);
        }
        out.tree = Some(tree);
        out.strategy = strategy;
    }

    if out.variants.iter().all(|v| v.hash.is_none()) {
        out.variants.push(VariantOut {
            key: "fallback",
            kind: "fallback",
            tree_variant: None,
            hash: Some(hash_one("fallback", "")),
            hint: None,
            values: None,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Runs the strategies in priority order and returns the winner's tree and name; `None` when no
/// strategy contributes.
fn strategies<'e>(
    event: &'e Event<'_>,
    config: &'e Config,
    flags: Flags,
    explain: bool,
) -> Option<(Tree<'e>, &'static str)> {
    let platform = event.platform.as_deref().unwrap_or("");
    let rules = config.enhancements.as_deref();
    let contributes = |t: &Tree<'_>| t.nodes[0].on[APP] || t.nodes[0].on[SYSTEM];
    let capacity = |frames: usize| 4 + frames * 4;

    let exceptions = &event.exception.0;
    if !exceptions.is_empty() {
        let order = if flags.exception_groups {
            exception_group::reduce(event, platform, rules, flags).map(|r| r.order)
        } else {
            None
        };
        let order = order.unwrap_or_else(|| (0..exceptions.len()).collect());
        let frames = exceptions
            .iter()
            .map(|e| e.stacktrace.as_ref().map_or(0, |s| s.frames.0.len()))
            .sum::<usize>();
        let mut tree = Tree::new(explain, capacity(frames) + 4 * order.len());
        let root = tree.open("chained-exception", Some("strategy"), "exception");
        let mut has_stack = [false; 2];
        for i in order {
            let is_main = i + 1 == exceptions.len();
            let on = add_exception(
                &mut tree,
                event,
                &exceptions[i],
                is_main,
                platform,
                rules,
                flags,
            );
            has_stack[APP] |= on[APP];
            has_stack[SYSTEM] |= on[SYSTEM];
        }
        tree.close(root);
        variant_rule(&mut tree, has_stack, flags);
        if contributes(&tree) {
            return Some((tree, "exception"));
        }
    }
    if let Some(st) = pick_thread(&event.threads.0).and_then(|t| t.stacktrace.as_ref()) {
        let mut tree = Tree::new(explain, capacity(st.frames.0.len()));
        let root = tree.open("threads", Some("strategy"), "threads");
        let s = frames::add_stacktrace(&mut tree, Some(st), None, "", platform, rules, flags);
        tree.close(root);
        let has_stack = tree.nodes[s].on;
        variant_rule(&mut tree, has_stack, flags);
        if contributes(&tree) {
            return Some((tree, "threads"));
        }
    }
    if let Some(st) = event.stacktrace.as_ref() {
        let mut tree = Tree::new(explain, capacity(st.frames.0.len()));
        let s = frames::add_stacktrace(
            &mut tree,
            Some(st),
            Some("strategy"),
            "stacktrace",
            platform,
            rules,
            flags,
        );
        let has_stack = tree.nodes[s].on;
        variant_rule(&mut tree, has_stack, flags);
        if contributes(&tree) {
            return Some((tree, "stacktrace"));
        }
    }
    if let Some(template) = event.log_entry().template() {
        let text = normalize_message(template);
        if !text.is_empty() {
            let mut tree = Tree::new(explain, 2);
            let root = tree.open("message", Some("strategy"), "message");
            tree.leaf("message", "message", Cow::Owned(text));
            tree.close(root);
            return Some((tree, "message"));
        }
    }
    None
}

/// Reference 6.1 step 4: when a variant has a contributing stack trace, the variants without one
/// give way (scheme flag `stack_variants_win`).
fn variant_rule(tree: &mut Tree<'_>, has_stack: [bool; 2], flags: Flags) {
    if !flags.stack_variants_win || !(has_stack[APP] || has_stack[SYSTEM]) {
        return;
    }
    for (v, other) in [(APP, "system"), (SYSTEM, "app")] {
        if !has_stack[v] && tree.nodes[0].on[v] {
            tree.off(0, &[v], || {
                format!(
                    "ignored because this variant does not have a contributing stacktrace, \
                     but the {other} variant does"
                )
                .into()
            });
        }
    }
}

/// Adds one `exception` node: `[stacktrace, type, ns-error?, value]` with the contribution rules
/// of reference 6.3. Returns whether its stack contributes, per variant.
fn add_exception<'e>(
    tree: &mut Tree<'e>,
    event: &'e Event<'_>,
    exc: &'e Exception<'_>,
    is_main: bool,
    platform: &str,
    rules: Option<&rules::Enhancements>,
    flags: Flags,
) -> [bool; 2] {
    let ex = tree.open("exception", Some("exception"), "");
    let stack = exception_stack(event, exc, is_main, flags);
    let st = frames::add_stacktrace(tree, stack, None, "", platform, rules, flags);
    let stack_on = tree.nodes[st].on;

    let mechanism = exc.mechanism.as_ref();
    let synthetic = mechanism.and_then(|m| m.synthetic.0).unwrap_or(false);
    if let Some(ty) = exc.ty.non_empty() {
        if synthetic {
            // A synthetic exception's type is made up by the SDK, so it must not split groups.
            tree.hidden(
                "type",
                "type",
                || Some(Cow::Borrowed(ty)),
                "ignored because exception is synthetic",
            );
        } else {
            tree.leaf("type", "type", Cow::Borrowed(ty));
        }
    }
    let ns_error = mechanism
        .and_then(|m| m.meta.as_ref())
        .and_then(|m| m.ns_error.as_ref());
    let ns_domain = ns_error.and_then(|n| n.domain.non_empty());
    let ns_code = ns_error.and_then(|n| n.code.as_i64());
    let ns_on = ns_domain.is_some() || ns_code.is_some();
    if ns_on {
        let ns = tree.open("ns-error", None, "");
        if let Some(d) = ns_domain {
            tree.leaf("domain", "ns_error.domain", Cow::Borrowed(d));
        }
        if let Some(c) = ns_code {
            tree.leaf("code", "ns_error.code", Cow::Owned(c.to_string()));
        }
        tree.close(ns);
    }
    // The value counts only where neither the stack nor ns-error does; normalized only if needed.
    let needed = [!stack_on[APP] && !ns_on, !stack_on[SYSTEM] && !ns_on];
    if needed[APP] || needed[SYSTEM] || tree.explain {
        let value = exc
            .value
            .non_empty()
            .map(normalize_message)
            .filter(|v| !v.is_empty());
        if let Some(value) = value {
            let leaf = tree.leaf("value", "value", Cow::Owned(value));
            for v in [APP, SYSTEM] {
                if !needed[v] {
                    tree.off(leaf, &[v], || match ns_on {
                        true => "ignored because ns-error info takes precedence".into(),
                        false => "ignored because stacktrace takes precedence".into(),
                    });
                }
            }
        }
    }
    tree.close(ex);
    stack_on
}

/// The stack of an exception: its own; or (scheme flag `thread_stacks`), when it has no frames,
/// the stack of the thread its `thread_id` names, else for the main exception the crashed (or
/// only) thread's. Cocoa SDKs and minidumps report the crash that way.
fn exception_stack<'e, 'a>(
    event: &'e Event<'a>,
    exc: &'e Exception<'a>,
    is_main: bool,
    flags: Flags,
) -> Option<&'e Stacktrace<'a>> {
    let own = exc.stacktrace.as_ref();
    if !flags.thread_stacks || own.is_some_and(|s| !s.frames.0.is_empty()) {
        return own;
    }
    let stack = |t: &'e Thread<'a>| t.stacktrace.as_ref().filter(|s| !s.frames.0.is_empty());
    let threads = &event.threads.0;
    let by_id = exc
        .thread_id
        .non_empty()
        .and_then(|id| threads.iter().find(|t| t.id.as_deref() == Some(id)))
        .and_then(stack);
    by_id
        .or_else(|| {
            is_main
                .then(|| pick_thread(threads))
                .flatten()
                .and_then(stack)
        })
        .or(own)
}

/// The thread whose stack to group by: the single crashed one, else the single current one,
/// else the only thread.
fn pick_thread<'e, 'a>(threads: &'e [Thread<'a>]) -> Option<&'e Thread<'a>> {
    let single = |pred: fn(&Thread<'a>) -> bool| {
        let mut it = threads.iter().filter(|t| pred(t));
        match (it.next(), it.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    };
    single(|t| t.crashed.0 == Some(true))
        .or_else(|| single(|t| t.current.0 == Some(true)))
        .or(match threads {
            [only] => Some(only),
            _ => None,
        })
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_new;

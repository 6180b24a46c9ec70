//! Grouping hashes for events: Sentry's "newstyle" grouping (reference section 6), SHA-256 based.

// The algorithm, in short: a `checksum` wins outright; otherwise the strategies (chained
// exceptions, threads, top-level stacktrace, message) are tried in priority order and the first
// one with any contributing component wins. It yields two variants, `app` (in-app frames only)
// and `system` (all frames), which a custom or hybrid fingerprint may then replace or salt.
//
// Hash bytes. Every hash is the first 16 bytes of SHA-256 (32 lowercase hex chars) over a list of
// labelled items. Each item is fed as `label`, a 0x00 byte, the value's byte length as a
// little-endian u64, then the value's bytes. Labels are static and never contain 0x00, and the
// length prefix delimits the value, so the encoding is unambiguous even for values that contain
// 0x00: `["ab","c"]` and `["a","bc"]` differ, and so do two frames `[module]`,`[function]` versus
// one frame `[module, function]` (each frame and exception also starts with a marker item).
// The labels include the winning strategy's name, so a message "X" never collides with an
// exception type "X". None of this is byte-compatible with Sentry's MD5 hashes; it does not need
// to be, and `GROUPING_VERSION` is stored next to each hash so a later change is detectable.

use crate::protocol::event::{Event, Exception, Frame, Stacktrace, Thread};
use regex::{Captures, Regex};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::LazyLock;

/// Version of this grouping scheme; stored next to every hash.
pub const GROUPING_VERSION: &str = "sh-2026-11";

/// One labelled hash input (see the module doc for the byte encoding).
type Item<'e> = (&'static str, Cow<'e, str>);

/// The flattened contributing values of one variant, in component order.
type Stream<'e> = Vec<Item<'e>>;

/// Grouping hashes of `event`, highest priority first, without duplicates; never empty.
///
/// Order: checksum alone; or the custom fingerprint alone; or `app` then `system` (both salted
/// with the other fingerprint entries when the fingerprint is hybrid). A `system` variant that
/// hashes like `app` is dropped. When nothing contributes, one fixed fallback hash is returned so
/// every event still lands in some issue.
pub fn hashes(event: &Event<'_>) -> Vec<String> {
    if let Some(checksum) = event.checksum.non_empty() {
        // Hashed even when it already looks like an MD5 hex digest, so every stored hash has one
        // format and a client cannot pick a value that collides with our own hashes.
        return vec![hash_items(&[("checksum", Cow::Borrowed(checksum))])];
    }

    let fingerprint = &event.fingerprint.0;
    let is_default = |e: &str| fingerprint_var(e) == Some("default");
    let has_default = fingerprint.iter().any(|e| is_default(e));
    let all_default = fingerprint.iter().all(|e| is_default(e));

    let mut out: Vec<String> = Vec::with_capacity(2);
    if !has_default && !fingerprint.is_empty() {
        // Custom fingerprint: the default grouping is not even computed.
        let items: Stream<'_> = fingerprint
            .iter()
            .map(|e| ("fingerprint", resolve_fingerprint_entry(event, e)))
            .collect();
        out.push(hash_items(&items));
    } else {
        let (app, system) = default_variants(event);
        for stream in [app, system].into_iter().flatten() {
            let h = if all_default {
                // Covers an absent/empty fingerprint and `["{{ default }}"]` alone.
                hash_items(&stream)
            } else {
                // Hybrid: salt this variant's values with the other entries, in entry order.
                let mut salted: Stream<'_> = Vec::with_capacity(stream.len() + fingerprint.len());
                for e in fingerprint {
                    if is_default(e) {
                        salted.extend(stream.iter().cloned());
                    } else {
                        salted.push(("fingerprint", resolve_fingerprint_entry(event, e)));
                    }
                }
                hash_items(&salted)
            };
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    if out.is_empty() {
        out.push(hash_items(&[("fallback", Cow::Borrowed(""))]));
    }
    out
}

/// SHA-256 of the labelled items, truncated to 16 bytes, as lowercase hex.
fn hash_items(items: &[Item<'_>]) -> String {
    let mut h = Sha256::new();
    for (label, value) in items {
        h.update(label.as_bytes());
        h.update([0u8]);
        h.update((value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    }
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Runs the strategies in priority order and returns the winner's `(app, system)` streams; each is
/// `None` when that variant does not contribute. Both are `None` when no strategy contributes.
fn default_variants<'e>(event: &'e Event<'_>) -> (Option<Stream<'e>>, Option<Stream<'e>>) {
    let platform = event.platform.as_deref().unwrap_or("");

    if !event.exception.0.is_empty() {
        let v = exception_variants(&event.exception.0, platform);
        if v.0.is_some() || v.1.is_some() {
            return v;
        }
    }
    if let Some(st) = pick_thread(&event.threads.0).and_then(|t| t.stacktrace.as_ref()) {
        let v = stacktrace_variants("threads", st, platform);
        if v.0.is_some() || v.1.is_some() {
            return v;
        }
    }
    if let Some(st) = event.stacktrace.as_ref() {
        let v = stacktrace_variants("stacktrace", st, platform);
        if v.0.is_some() || v.1.is_some() {
            return v;
        }
    }
    if let Some(template) = event.log_entry().template() {
        let text = normalize_message(template);
        if !text.is_empty() {
            // Message grouping has no app/system distinction: one stream for both, and the
            // duplicate system hash is dropped by the caller.
            let stream: Stream<'e> = vec![
                ("strategy", Cow::Borrowed("message")),
                ("message", Cow::Owned(text)),
            ];
            return (Some(stream.clone()), Some(stream));
        }
    }
    (None, None)
}

/// Chained-exception strategy: every exception in list order (oldest first), each as
/// `[stacktrace, type, ns_error?, value]` with the contribution rules of reference 6.3.
fn exception_variants<'e>(
    exceptions: &'e [Exception<'_>],
    platform: &str,
) -> (Option<Stream<'e>>, Option<Stream<'e>>) {
    let mut app: Stream<'e> = vec![("strategy", Cow::Borrowed("exception"))];
    let mut system = app.clone();
    let (mut app_contributes, mut system_contributes) = (false, false);

    for exc in exceptions {
        let frames = exc
            .stacktrace
            .as_ref()
            .map(|s| analyze_frames(s, platform))
            .unwrap_or_default();
        let mechanism = exc.mechanism.as_ref();
        let synthetic = mechanism.and_then(|m| m.synthetic.0).unwrap_or(false);
        // A synthetic exception's type is made up by the SDK, so it must not split groups.
        let ty = exc.ty.non_empty().filter(|_| !synthetic);
        let ns_error = mechanism
            .and_then(|m| m.meta.as_ref())
            .and_then(|m| m.ns_error.as_ref());
        let ns_domain = ns_error.and_then(|n| n.domain.non_empty());
        let ns_code = ns_error.and_then(|n| n.code.as_i64());
        let ns_contributes = ns_domain.is_some() || ns_code.is_some();
        // Normalized lazily: only a variant without a contributing stack needs the value.
        let mut value: Option<Option<String>> = None;

        for (is_app, stream, contributes) in [
            (true, &mut app, &mut app_contributes),
            (false, &mut system, &mut system_contributes),
        ] {
            let start = stream.len();
            stream.push(("exception", Cow::Borrowed("")));
            let stack_contributes = push_frames(stream, &frames, is_app);
            if let Some(t) = ty {
                stream.push(("type", Cow::Borrowed(t)));
            }
            if let Some(d) = ns_domain {
                stream.push(("ns_error.domain", Cow::Borrowed(d)));
            }
            if let Some(c) = ns_code {
                stream.push(("ns_error.code", Cow::Owned(c.to_string())));
            }
            if !stack_contributes && !ns_contributes {
                let v = value.get_or_insert_with(|| {
                    exc.value
                        .non_empty()
                        .map(normalize_message)
                        .filter(|v| !v.is_empty())
                });
                if let Some(v) = v {
                    stream.push(("value", Cow::Owned(v.clone())));
                }
            }
            if stream.len() == start + 1 {
                // Nothing in this exception contributes: drop its marker too.
                stream.truncate(start);
            } else {
                *contributes = true;
            }
        }
    }
    (
        app_contributes.then_some(app),
        system_contributes.then_some(system),
    )
}

/// Threads and top-level stacktrace strategies: just the stacktrace component.
fn stacktrace_variants<'e>(
    strategy: &'static str,
    stacktrace: &'e Stacktrace<'_>,
    platform: &str,
) -> (Option<Stream<'e>>, Option<Stream<'e>>) {
    let frames = analyze_frames(stacktrace, platform);
    let variant = |is_app: bool| {
        let mut s: Stream<'e> = vec![("strategy", Cow::Borrowed(strategy))];
        push_frames(&mut s, &frames, is_app).then_some(s)
    };
    (variant(true), variant(false))
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

// ---------------------------------------------------------------------------------------------
// Frames

/// What grouping needs of one frame, computed once and shared by both variants.
struct FrameInfo<'e> {
    /// `[module|filename, function, context_line]` items; empty when nothing contributes.
    items: Vec<Item<'e>>,
    in_app: bool,
}

/// Platform families with their own frame rules (reference 6.4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Js,
    Python,
    Php,
    Ruby,
    Java,
    Native,
    CSharp,
    Other,
}

fn family(platform: &str) -> Family {
    let is = |name: &str| platform.eq_ignore_ascii_case(name);
    if is("javascript") || is("node") {
        Family::Js
    } else if is("python") {
        Family::Python
    } else if is("php") {
        Family::Php
    } else if is("ruby") {
        Family::Ruby
    } else if is("java") {
        Family::Java
    } else if is("native") || is("c") || is("cocoa") || is("objc") || is("swift") {
        Family::Native
    } else if is("csharp") {
        Family::CSharp
    } else {
        Family::Other
    }
}

/// Pushes the contributing frames of `frames` for one variant; returns whether any contributed.
fn push_frames<'e>(stream: &mut Stream<'e>, frames: &[FrameInfo<'e>], is_app: bool) -> bool {
    let mut any = false;
    for f in frames {
        if f.items.is_empty() || (is_app && !f.in_app) {
            continue;
        }
        stream.push(("frame", Cow::Borrowed("")));
        stream.extend(f.items.iter().cloned());
        any = true;
    }
    any
}

/// Builds the per-frame grouping info for a stacktrace, applying the recursion rule and the
/// JavaScript single-frame rule.
fn analyze_frames<'e>(stacktrace: &'e Stacktrace<'_>, event_platform: &str) -> Vec<FrameInfo<'e>> {
    let frames = &stacktrace.frames.0;
    let mut out = Vec::with_capacity(frames.len());
    let mut prev: Option<&Frame<'_>> = None;
    for frame in frames {
        // Recursion: a frame identical to its caller adds nothing but depth, which must not split
        // groups (a recursion 5 deep and 6 deep is the same bug).
        let items = if prev.is_some_and(|p| same_location(p, frame)) {
            Vec::new()
        } else {
            frame_items(frame, event_platform)
        };
        out.push(FrameInfo {
            items,
            in_app: is_in_app(frame),
        });
        prev = Some(frame);
    }
    // JS: a lone frame without a function pointing at a URL is just "some script": ignore it.
    if let [only] = frames.as_slice() {
        if family(frame_platform(only, event_platform)) == Family::Js
            && only.function.non_empty().is_none()
            && only.abs_path.non_empty().is_some_and(is_url)
        {
            out.clear();
        }
    }
    out
}

fn same_location(a: &Frame<'_>, b: &Frame<'_>) -> bool {
    a.abs_path == b.abs_path
        && a.package == b.package
        && a.module == b.module
        && a.filename == b.filename
        && a.function == b.function
        && a.lineno == b.lineno
        && a.colno == b.colno
}

fn frame_platform<'e>(frame: &'e Frame<'_>, event_platform: &'e str) -> &'e str {
    frame.platform.non_empty().unwrap_or(event_platform)
}

fn is_url(s: &str) -> bool {
    let lower_starts = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    lower_starts("http://") || lower_starts("https://")
}

/// Function-name prefixes that are never application code, whatever `in_app` says.
///
/// Our small default "enhancement" (Sentry has server-side stack trace rules for this): the Rust
/// SDK marks its own panic handler (`sentry_panic::...`, `<sentry_panic::PanicIntegration as
/// ...>`) and some runtime frames in-app, which would make every panic of an app share its last
/// in-app frames. We also treat Rust std/core/alloc trait-impl frames (`<core::...>`,
/// `<&dyn core::...>`) and the libc start-up frames the same way; C++ `std::` frames are not app
/// code either.
const NOT_APP_FUNCTION_PREFIXES: &[&str] = &[
    "sentry::",
    "sentry_core::",
    "sentry_panic::",
    "sentry_backtrace::",
    "std::",
    "core::",
    "alloc::",
    "__rust",
    "<sentry",
    "<std::",
    "<core::",
    "<alloc::",
    "<&dyn core::",
    "<dyn core::",
    "__libc_start",
];

/// Path fragments of third-party code, used when the SDK did not say whether a frame is in-app.
const NOT_APP_PATH_FRAGMENTS: &[&str] = &["site-packages/", "dist-packages/", "node_modules/"];

/// Whether a frame counts as application code for the `app` variant and the crash frame.
fn is_in_app(frame: &Frame<'_>) -> bool {
    let function = frame
        .function
        .non_empty()
        .or_else(|| frame.raw_function.non_empty());
    if let Some(f) = function {
        if NOT_APP_FUNCTION_PREFIXES.iter().any(|p| f.starts_with(p)) {
            return false;
        }
    }
    match frame.in_app.0 {
        Some(v) => v,
        // Third-party paths are checked even though the default is false, so that flipping the
        // default for an absent `in_app` keeps vendored code out of the app variant.
        None => ABSENT_IN_APP_DEFAULT && !is_third_party_path(frame),
    }
}

/// What an absent `in_app` means. Reference 6.4 leaves this open; false is the safe choice: a
/// frame of unknown origin then only shapes the `system` hash.
const ABSENT_IN_APP_DEFAULT: bool = false;

fn is_third_party_path(frame: &Frame<'_>) -> bool {
    [&frame.filename, &frame.abs_path].iter().any(|p| {
        p.as_deref()
            .is_some_and(|p| NOT_APP_PATH_FRAGMENTS.iter().any(|f| p.contains(f)))
    })
}

/// The contributing `[module | filename, function, context_line]` items of one frame (reference
/// 6.4), or nothing when the whole frame is ignored.
fn frame_items<'e>(frame: &'e Frame<'_>, event_platform: &str) -> Vec<Item<'e>> {
    let fam = family(frame_platform(frame, event_platform));
    let abs_path = frame.abs_path.non_empty();
    let raw_fn = frame.function.non_empty();

    if fam == Family::Js
        && (raw_fn == Some("eval")
            || abs_path.is_some_and(|p| {
                matches!(
                    p,
                    "[native code]" | "native code" | "eval code" | "<anonymous>"
                )
            }))
    {
        return Vec::new();
    }

    let module = frame
        .module
        .non_empty()
        .and_then(|m| module_value(m, fam, abs_path));
    let filename = if module.is_some() || abs_path.is_some_and(is_url) {
        None
    } else {
        filename_value(frame)
    };
    let context = context_value(frame, fam, raw_fn, abs_path);
    let mut function = function_value(frame, fam);
    if fam == Family::Js
        && context.is_some()
        && frame
            .data
            .as_ref()
            .is_some_and(|d| d.sourcemap.non_empty().is_some())
    {
        // Minified names behind a source map are unstable; the context line identifies the frame.
        function = None;
    }

    let mut items = Vec::with_capacity(3);
    if let Some(m) = module {
        items.push(("module", m));
    }
    if let Some(f) = filename {
        items.push(("filename", f));
    }
    if let Some(f) = function {
        items.push(("function", f));
    }
    if let Some(c) = context {
        items.push(("context_line", c));
    }
    items
}

static JAVA_AUTO_MODULE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(\$\$(?:EnhancerBy|FastClassBy)[A-Za-z]*\$\$|_\$\$_javassist|\$HibernateProxy\$|\$fn__)[0-9A-Za-z_$]*",
    )
    .expect("static regex")
});

static JAVA_ACCESSOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^((?:sun|jdk\.internal)\.reflect\.Generated(?:Serialization)?(?:Constructor|Method)Accessor)\d+")
        .expect("static regex")
});

fn module_value<'e>(module: &'e str, fam: Family, abs_path: Option<&str>) -> Option<Cow<'e, str>> {
    match fam {
        Family::Js if module.contains('/') && abs_path.is_some_and(|p| p.ends_with(module)) => None,
        Family::Java if module.contains("$$Lambda$") => None,
        Family::Java => {
            // Generated class names carry counters that differ per JVM run.
            if let Some(c) = JAVA_ACCESSOR.captures(module) {
                let prefix = c.get(1).map_or("", |m| m.as_str());
                return Some(Cow::Owned(prefix.to_owned()));
            }
            Some(JAVA_AUTO_MODULE.replace_all(module, "$1<auto>"))
        }
        _ => Some(Cow::Borrowed(module)),
    }
}

fn filename_value<'e>(frame: &'e Frame<'_>) -> Option<Cow<'e, str>> {
    let name = frame
        .filename
        .non_empty()
        .or_else(|| frame.abs_path.non_empty())?;
    if matches!(name, "<anonymous>" | "[native code]") {
        return None;
    }
    // Basename only: the same file deployed under another directory is the same code.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if base.is_empty() {
        return None;
    }
    if base.chars().any(char::is_uppercase) {
        Some(Cow::Owned(base.to_lowercase()))
    } else {
        Some(Cow::Borrowed(base))
    }
}

fn context_value<'e>(
    frame: &'e Frame<'_>,
    fam: Family,
    raw_fn: Option<&str>,
    abs_path: Option<&str>,
) -> Option<Cow<'e, str>> {
    if !matches!(
        fam,
        Family::Js | Family::Python | Family::Php | Family::Ruby
    ) {
        return None;
    }
    let line = frame.context_line.non_empty()?;
    // Very long lines are usually minified code, whose text changes with every build.
    if line.len() > 120 && line.chars().count() > 120 {
        return None;
    }
    if fam == Family::Js && raw_fn.is_none() && abs_path.is_some_and(is_url) {
        return None;
    }
    let collapsed = collapse_whitespace(line);
    (!collapsed.is_empty()).then_some(collapsed)
}

/// `" ".join(line.split())`, borrowing when the line is already in that form.
fn collapse_whitespace(line: &str) -> Cow<'_, str> {
    let trimmed = line.trim();
    let mut prev_space = false;
    let clean = trimmed.chars().all(|c| {
        let ok = (c == ' ' && !prev_space) || !c.is_whitespace();
        prev_space = c == ' ';
        ok
    });
    if clean {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(trimmed.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

fn function_value<'e>(frame: &'e Frame<'_>, fam: Family) -> Option<Cow<'e, str>> {
    let function = frame.function.non_empty();
    let raw = frame.raw_function.non_empty();
    let name = if fam == Family::CSharp {
        raw.or(function)?
    } else {
        function.or(raw)?
    };
    match fam {
        Family::Js => {
            if name.ends_with("/<") {
                return None;
            }
            // Keep the part after the last `.`: receivers (`Object.`, `Foo.prototype.`) vary.
            let short = name.rsplit('.').next().unwrap_or(name);
            if matches!(
                short,
                "" | "?" | "<anonymous function>" | "<anonymous>" | "Anonymous function"
            ) || short.ends_with("/<")
            {
                return None;
            }
            Some(Cow::Borrowed(short))
        }
        Family::Ruby => {
            if name.starts_with("block ") {
                return Some(Cow::Borrowed("block"));
            }
            Some(Cow::Borrowed(strip_erb_suffix(name)))
        }
        Family::Php => {
            if name.starts_with("[Anonymous") {
                return None;
            }
            if name.starts_with("class@anonymous") {
                return name
                    .rsplit_once("::")
                    .map(|(_, m)| m)
                    .filter(|m| !m.is_empty())
                    .map(Cow::Borrowed);
            }
            Some(Cow::Borrowed(name))
        }
        Family::Java if name.starts_with("lambda$") => None,
        Family::Native | Family::CSharp => {
            if matches!(name, "<redacted>" | "<unknown>") {
                return None;
            }
            let trimmed = trim_native_function(name);
            (!trimmed.is_empty()).then_some(trimmed)
        }
        _ => Some(Cow::Borrowed(name)),
    }
}

/// Removes an erb template suffix `__\d{4,}_\d{4,}` (Ruby), which changes with every compile.
fn strip_erb_suffix(name: &str) -> &str {
    let Some((head, tail)) = name.rsplit_once("__") else {
        return name;
    };
    let Some((a, b)) = tail.split_once('_') else {
        return name;
    };
    let digits = |s: &str| s.len() >= 4 && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        head
    } else {
        name
    }
}

/// Strips argument lists `(...)` and generic arguments `<...>` from a native (C++, Rust, C#)
/// function name: they carry types that change with unrelated edits. A leading `<...>` is kept
/// (Rust's `<T as Trait>::method` and symbolizer placeholders), with its own generics trimmed.
fn trim_native_function(name: &str) -> Cow<'_, str> {
    if !name.contains(['<', '(']) {
        return Cow::Borrowed(name.trim());
    }
    let mut out = String::with_capacity(name.len());
    let mut skip = 0usize; // nesting depth of brackets being dropped
    let mut kept = 0usize; // nesting depth of the leading `<` bracket being kept
    let mut prev = '\0';
    for c in name.chars() {
        let arrow = c == '>' && prev == '-'; // `->` in `Fn(u8) -> u8` is no bracket
        prev = c;
        match c {
            '<' | '(' if skip > 0 => skip += 1,
            '>' | ')' if skip > 0 && !arrow => skip -= 1,
            _ if skip > 0 => {}
            '<' if out.is_empty() => {
                kept += 1;
                out.push(c);
            }
            // `operator<`, `operator<<`, `operator()` are names, not brackets.
            '<' | '(' if out.ends_with("operator") || out.ends_with("operator<") => out.push(c),
            '<' | '(' => {
                // Rust's turbofish `foo::<T>` leaves a dangling `::` once the generics are gone.
                if c == '<' && out.ends_with("::") {
                    out.truncate(out.len() - 2);
                }
                skip = 1;
            }
            '>' if kept > 0 && !arrow => {
                kept -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        Cow::Owned(out)
    } else {
        Cow::Owned(trimmed.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Crash frame and fingerprint variables

/// The frame a crash is attributed to (reference 6.6): in the main (last) exception's stack, else
/// the top-level stacktrace, else the chosen thread's stack, the newest in-app frame, else the
/// newest frame. In-app here includes our default rules (see `NOT_APP_FUNCTION_PREFIXES`), so a
/// Rust panic points at the panicking app function rather than the SDK's panic handler.
pub fn crash_frame<'e, 'a>(event: &'e Event<'a>) -> Option<&'e Frame<'a>> {
    let frames = [
        event.exception.0.last().and_then(|e| e.stacktrace.as_ref()),
        event.stacktrace.as_ref(),
        pick_thread(&event.threads.0).and_then(|t| t.stacktrace.as_ref()),
    ]
    .into_iter()
    .flatten()
    .map(|s| s.frames.0.as_slice())
    .find(|f| !f.is_empty())?;
    frames
        .iter()
        .rev()
        .find(|f| is_in_app(f))
        .or_else(|| frames.last())
}

/// The variable name of a fingerprint entry when the whole entry is `{{ name }}`
/// (`\{\{\s*(\S+)\s*\}\}`), else `None`.
fn fingerprint_var(entry: &str) -> Option<&str> {
    let inner = entry.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!inner.is_empty() && !inner.contains(char::is_whitespace)).then_some(inner)
}

/// Resolves one fingerprint entry: a known variable becomes its value (or its `<no-...>`
/// fallback); anything else, unknown variables included, stays literal.
fn resolve_fingerprint_entry<'e>(event: &'e Event<'_>, entry: &'e str) -> Cow<'e, str> {
    let Some(var) = fingerprint_var(entry) else {
        return Cow::Borrowed(entry);
    };
    let main_exc = event.exception.0.last();
    let frame = || crash_frame(event);
    let or = |v: Option<&'e str>, fallback: &'static str| Cow::Borrowed(v.unwrap_or(fallback));
    match var {
        "transaction" => or(event.transaction.non_empty(), "<no-transaction>"),
        "message" => or(
            event
                .log_entry()
                .text()
                .or_else(|| main_exc.and_then(|e| e.value.non_empty())),
            "<no-message>",
        ),
        "type" | "error.type" => or(main_exc.and_then(|e| e.ty.non_empty()), "<no-type>"),
        "value" | "error.value" => or(main_exc.and_then(|e| e.value.non_empty()), "<no-value>"),
        "function" | "stack.function" => or(
            frame().and_then(|f| f.function.non_empty()),
            "<no-function>",
        ),
        "path" | "stack.abs_path" => or(
            frame().and_then(|f| f.abs_path.non_empty().or(f.filename.non_empty())),
            "<no-abs-path>",
        ),
        "stack.filename" => or(
            frame().and_then(|f| f.filename.non_empty().or(f.abs_path.non_empty())),
            "<no-filename>",
        ),
        "module" | "stack.module" => or(frame().and_then(|f| f.module.non_empty()), "<no-module>"),
        "package" | "stack.package" => or(
            frame()
                .and_then(|f| f.package.non_empty())
                .and_then(|p| p.rsplit(['/', '\\']).next())
                .filter(|p| !p.is_empty()),
            "<no-package>",
        ),
        // The model always has a level (absent reads as `error`), so `<no-level>` cannot occur.
        "level" => Cow::Borrowed(event.level.as_str()),
        "logger" => or(event.logger.non_empty(), "<no-logger>"),
        _ => match var.strip_prefix("tags.") {
            Some(tag) => match event.tags.get(tag) {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Owned(format!("<no-value-for-tag-{tag}>")),
            },
            None => Cow::Borrowed(entry),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Message parameterization

/// The tokens of reference 6.5, in priority order; each alternative is one capture group, named
/// by the placeholder it becomes. `\b` is ASCII-only (`(?-u:\b)`) so the lazy DFA keeps working on
/// non-ASCII text (a Unicode `\b` makes the regex crate fall back to a much slower engine).
static PARAMS: LazyLock<Regex> = LazyLock::new(|| {
    const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    const DAY: &str = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
    const LONG_DAY: &str = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
    let hex = "[0-9a-fA-F]";
    let ipv4_octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let tokens: [(&str, String); 12] = [
        ("email", r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}".into()),
        ("url", r"\b(?:wss?|https?|ftp)://[^\s/$.?#][^\s]*".into()),
        (
            "hostname",
            r"\b(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+(?i:com|net|org|edu|gov|mil|io|dev|app|info|biz|uk|de|fr|nl|eu|ru|cn|jp|us|ca|au|br|local|internal|localdomain|cloud)\b".into(),
        ),
        (
            "ip",
            format!(
                r"\b(?:{o}\.){{3}}{o}\b|\b(?:{h}{{1,4}}:){{7}}{h}{{1,4}}\b|\b(?:{h}{{1,4}}:){{1,6}}(?::{h}{{1,4}}){{1,6}}\b|::1\b",
                o = ipv4_octet,
                h = hex
            ),
        ),
        ("uuid", format!(r"\b{h}{{8}}-{h}{{4}}-{h}{{4}}-{h}{{4}}-{h}{{12}}\b", h = hex)),
        ("sha1", format!(r"\b{hex}{{40}}\b")),
        ("md5", format!(r"\b{hex}{{32}}\b")),
        (
            "date",
            [
                // RFC 3339 / ISO 8601, with `T` or a space, optional fraction and zone.
                r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2}\b)?".to_owned(),
                // RFC 822 / RFC 1123
                format!(r"\b{DAY},? [0-9]{{1,2}} {MONTH} [0-9]{{2,4}} [0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}})? (?:[A-Z]{{2,5}}\b|[+-][0-9]{{4}}\b)"),
                // RFC 850
                format!(r"\b{LONG_DAY}, [0-9]{{2}}-{MONTH}-[0-9]{{2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [A-Z]{{2,5}}\b"),
                // ANSI C asctime: `Mon Jan  2 15:04:05 2006`
                format!(r"\b{DAY} {MONTH} +[0-9]{{1,2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [0-9]{{4}}\b"),
                // Kitchen: `3:04PM`, `3:04:05 pm`
                r"\b[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})? ?[AaPp][Mm]\b".to_owned(),
                r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}\b".to_owned(),
                r"\b[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?\b".to_owned(),
                r"datetime\.datetime\([^)]*\)".to_owned(),
            ]
            .join("|"),
        ),
        ("duration", r"\b[0-9]+(?:\.[0-9]+)?(?:ms|s)\b".into()),
        ("hex", format!(r"\b0[xX]{hex}+\b")),
        ("float", r"-[0-9]+\.[0-9]+\b|\b[0-9]+\.[0-9]+\b".into()),
        ("int", r"-[0-9]+\b|\b[0-9]+\b".into()),
    ];
    let mut pattern = String::new();
    for (name, re) in &tokens {
        if !pattern.is_empty() {
            pattern.push('|');
        }
        pattern.push_str(&format!("(?P<{name}>{re})"));
    }
    // Only right after `=`: the regex crate has no lookbehind, so the `=` is matched and put back.
    pattern.push_str(r#"|=(?P<quoted_str>'[^']*'|"[^"]*")|=(?P<bool>(?i:true|false)\b)"#);
    let pattern = pattern.replace(r"\b", r"(?-u:\b)");
    Regex::new(&pattern).expect("static regex")
});

/// Placeholder names in the order of `PARAMS`' capture groups.
const PARAM_NAMES: [&str; 14] = [
    "email",
    "url",
    "hostname",
    "ip",
    "uuid",
    "sha1",
    "md5",
    "date",
    "duration",
    "hex",
    "float",
    "int",
    "quoted_str",
    "bool",
];

/// Parameterizes a message or exception value for grouping (reference 6.5): keeps the first two
/// non-empty lines (appending `...` when more followed), then replaces variable parts such as
/// numbers, ids, addresses and dates by `<name>` placeholders.
pub fn normalize_message(text: &str) -> String {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("");
    let second = lines.next();
    let more = lines.next().is_some();
    let mut joined: Cow<'_, str> = match second {
        Some(second) => Cow::Owned(format!("{first}\n{second}")),
        None => Cow::Borrowed(first),
    };
    if let Cow::Borrowed(s) = joined {
        joined = Cow::Borrowed(s.trim());
    } else if joined.trim().len() != joined.len() {
        joined = Cow::Owned(joined.trim().to_owned());
    }

    let mut out = PARAMS
        .replace_all(&joined, |caps: &Captures<'_>| {
            let all = caps.get(0).map_or("", |m| m.as_str());
            for (i, name) in PARAM_NAMES.iter().enumerate() {
                let Some(m) = caps.get(i + 1) else { continue };
                let literal = match *name {
                    // Sentry's pattern has a `(?![\w.-])` lookahead: `java.io.IOException` names
                    // a package, not a host. Emulated by looking at the next character.
                    "hostname" => joined
                        .get(m.end()..)
                        .and_then(|rest| rest.chars().next())
                        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_')),
                    // An "IPv6 address" without any digit is almost surely a `mod::item` path.
                    "ip" => {
                        m.as_str().contains("::")
                            && !m.as_str().contains(|c: char| c.is_ascii_digit())
                    }
                    _ => false,
                };
                if literal {
                    return all.to_owned();
                }
                // The `=` of `=<quoted_str>` / `=<bool>` was matched too (no lookbehind): keep it.
                let eq = if all.starts_with('=') { "=" } else { "" };
                return format!("{eq}<{name}>");
            }
            all.to_owned()
        })
        .into_owned();
    if more {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::parse;
    use serde_json::{json, Value};

    fn h(event: &Value) -> Vec<String> {
        let bytes = serde_json::to_vec(event).unwrap();
        hashes(&parse(&bytes).unwrap())
    }

    fn with(mut event: Value, key: &str, value: Value) -> Value {
        event[key] = value;
        event
    }

    fn exc(ty: &str, value: &str, frames: Value) -> Value {
        json!({"type": ty, "value": value, "stacktrace": {"frames": frames}})
    }

    fn py_frame(function: &str, line: &str, in_app: bool) -> Value {
        json!({"module": "app.mod", "filename": "app/mod.py", "function": function,
               "context_line": line, "in_app": in_app})
    }

    fn py_event(frames: Value, ty: &str, value: &str) -> Value {
        json!({"platform": "python", "exception": {"values": [exc(ty, value, frames)]}})
    }

    /// A Python error with two in-app frames and one library frame.
    fn mixed(lib_line: &str, value: &str) -> Value {
        py_event(
            json!([
                py_frame("main", "main()", true),
                py_frame("handler", "handle(x)", true),
                py_frame("lib_call", lib_line, false)
            ]),
            "ValueError",
            value,
        )
    }

    fn thread(crashed: bool, current: bool, function: &str) -> Value {
        json!({"crashed": crashed, "current": current,
               "stacktrace": {"frames": [{"function": function, "filename": "t.c", "in_app": true}]}})
    }

    fn rust_panic(sdk_function: &str, line: i64) -> Value {
        json!({"platform": "native", "exception": {"values": [{"type": "panic", "value": "boom",
        "mechanism": {"type": "panic", "handled": false},
        "stacktrace": {"frames": [
            {"function": "main", "in_app": true},
            {"function": "std::rt::lang_start", "package": "std", "filename": "rt.rs", "in_app": false},
            {"function": "my_app::level3", "filename": "main.rs", "lineno": line, "in_app": true},
            {"function": "core::panicking::panic_fmt", "in_app": true},
            {"function": "__rustc::rust_begin_unwind", "in_app": true},
            {"function": "<sentry_panic::PanicIntegration as sentry_core::integration::Integration>::setup::{{closure}}", "in_app": true},
            {"function": sdk_function, "filename": "lib.rs", "in_app": true},
            {"function": "sentry_backtrace::current_stacktrace", "in_app": false}
        ]}}]}})
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Rel {
        /// Identical hash lists.
        Same,
        /// No hash in common.
        Disjoint,
        /// The first (app) hash is shared, the last (system) differs.
        SameAppDiffSystem,
        /// The first (app) hash differs, the last (system) is shared.
        DiffAppSameSystem,
    }

    #[test]
    fn hash_relations() {
        let frames = || {
            json!([
                py_frame("main", "main()", true),
                py_frame("f", "f(1)", true)
            ])
        };
        let base = py_event(frames(), "ValueError", "bad 42");
        let f = |x: &str| json!({"function": x, "module": "m", "in_app": true});
        let msg = |m: &str| json!({"message": m});
        let rows: Vec<(&str, Value, Value, Rel)> = vec![
            (
                "identical event twice",
                base.clone(),
                base.clone(),
                Rel::Same,
            ),
            (
                "checksum overrides everything",
                with(base.clone(), "checksum", json!("abc")),
                json!({"checksum": "abc"}),
                Rel::Same,
            ),
            (
                "different checksums",
                json!({"checksum": "abc"}),
                json!({"checksum": "abd"}),
                Rel::Disjoint,
            ),
            (
                "checksum beats a custom fingerprint",
                json!({"checksum": "c", "fingerprint": ["x"]}),
                json!({"checksum": "c"}),
                Rel::Same,
            ),
            (
                "custom fingerprint ignores the payload",
                with(base.clone(), "fingerprint", json!(["a", "b"])),
                with(msg("other"), "fingerprint", json!(["a", "b"])),
                Rel::Same,
            ),
            (
                "custom fingerprint entries are separated",
                json!({"fingerprint": ["ab", "c"]}),
                json!({"fingerprint": ["a", "bc"]}),
                Rel::Disjoint,
            ),
            (
                "custom fingerprint entry order matters",
                json!({"fingerprint": ["a", "b"]}),
                json!({"fingerprint": ["b", "a"]}),
                Rel::Disjoint,
            ),
            (
                "custom fingerprint differs from default",
                with(base.clone(), "fingerprint", json!(["x"])),
                base.clone(),
                Rel::Disjoint,
            ),
            (
                "{{ default }} alone is the default",
                with(base.clone(), "fingerprint", json!(["{{ default }}"])),
                base.clone(),
                Rel::Same,
            ),
            (
                "{{default}} without spaces",
                with(base.clone(), "fingerprint", json!(["{{default}}"])),
                base.clone(),
                Rel::Same,
            ),
            (
                "empty fingerprint is the default",
                with(base.clone(), "fingerprint", json!([])),
                base.clone(),
                Rel::Same,
            ),
            (
                "hybrid differs from default",
                with(base.clone(), "fingerprint", json!(["x", "{{ default }}"])),
                base.clone(),
                Rel::Disjoint,
            ),
            (
                "hybrid salts differ",
                with(base.clone(), "fingerprint", json!(["x", "{{ default }}"])),
                with(base.clone(), "fingerprint", json!(["y", "{{ default }}"])),
                Rel::Disjoint,
            ),
            (
                "hybrid keeps the default's grouping",
                with(
                    py_event(frames(), "ValueError", "bad 1"),
                    "fingerprint",
                    json!(["x", "{{ default }}"]),
                ),
                with(
                    py_event(frames(), "ValueError", "bad 2"),
                    "fingerprint",
                    json!(["x", "{{ default }}"]),
                ),
                Rel::Same,
            ),
            (
                "hybrid keeps app/system variants",
                with(
                    mixed("a()", "v"),
                    "fingerprint",
                    json!(["x", "{{ default }}"]),
                ),
                with(
                    mixed("b()", "v"),
                    "fingerprint",
                    json!(["x", "{{ default }}"]),
                ),
                Rel::SameAppDiffSystem,
            ),
            (
                "value ignored when the stack contributes",
                py_event(frames(), "ValueError", "one"),
                py_event(frames(), "ValueError", "two"),
                Rel::Same,
            ),
            (
                "type always counts",
                py_event(frames(), "ValueError", "v"),
                py_event(frames(), "KeyError", "v"),
                Rel::Disjoint,
            ),
            (
                "synthetic type does not count",
                with(
                    py_event(frames(), "Error", "v"),
                    "exception",
                    json!([{"type": "Error", "value": "v", "mechanism": {"synthetic": true}, "stacktrace": {"frames": frames()}}]),
                ),
                with(
                    py_event(frames(), "Other", "v"),
                    "exception",
                    json!([{"type": "Other", "value": "v", "mechanism": {"synthetic": true}, "stacktrace": {"frames": frames()}}]),
                ),
                Rel::Same,
            ),
            (
                "no stack: value is normalized",
                json!({"exception": [{"type": "E", "value": "bad 42"}]}),
                json!({"exception": [{"type": "E", "value": "bad 43"}]}),
                Rel::Same,
            ),
            (
                "no stack: value counts",
                json!({"exception": [{"type": "E", "value": "bad"}]}),
                json!({"exception": [{"type": "E", "value": "worse"}]}),
                Rel::Disjoint,
            ),
            (
                "no in-app frames: app is type+value",
                py_event(json!([py_frame("a", "a()", false)]), "E", "v"),
                py_event(json!([py_frame("b", "b()", false)]), "E", "v"),
                Rel::SameAppDiffSystem,
            ),
            (
                "no in-app frames: value splits app",
                py_event(json!([py_frame("a", "a()", false)]), "E", "v"),
                py_event(json!([py_frame("a", "a()", false)]), "E", "w"),
                Rel::DiffAppSameSystem,
            ),
            (
                "absent in_app is not in-app",
                py_event(json!([{"function": "a", "module": "m"}]), "E", "v"),
                py_event(json!([{"function": "b", "module": "m"}]), "E", "v"),
                Rel::SameAppDiffSystem,
            ),
            (
                "library frame only changes system",
                mixed("a()", "v"),
                mixed("b()", "v"),
                Rel::SameAppDiffSystem,
            ),
            (
                "different line (context) changes the hash",
                py_event(json!([py_frame("f", "x = 1", true)]), "E", "v"),
                py_event(json!([py_frame("f", "x = 2", true)]), "E", "v"),
                Rel::Disjoint,
            ),
            (
                "line number alone does not",
                py_event(
                    json!([{"function": "f", "module": "m", "lineno": 1, "in_app": true}]),
                    "E",
                    "v",
                ),
                py_event(
                    json!([{"function": "f", "module": "m", "lineno": 2, "in_app": true}]),
                    "E",
                    "v",
                ),
                Rel::Same,
            ),
            (
                "chained order matters",
                json!({"exception": [{"type": "A"}, {"type": "B"}]}),
                json!({"exception": [{"type": "B"}, {"type": "A"}]}),
                Rel::Disjoint,
            ),
            (
                "chain length matters",
                json!({"exception": [{"type": "A"}, {"type": "B"}]}),
                json!({"exception": [{"type": "B"}]}),
                Rel::Disjoint,
            ),
            (
                "chain boundaries are unambiguous",
                json!({"exception": [{"type": "A", "stacktrace": {"frames": [f("x")]}}, {"type": "B"}]}),
                json!({"exception": [{"type": "A"}, {"type": "B", "stacktrace": {"frames": [f("x")]}}]}),
                Rel::Disjoint,
            ),
            (
                "frame boundaries are unambiguous",
                py_event(
                    json!([{"module": "m", "in_app": true}, {"function": "f", "in_app": true}]),
                    "E",
                    "",
                ),
                py_event(
                    json!([{"module": "m", "function": "f", "in_app": true}]),
                    "E",
                    "",
                ),
                Rel::Disjoint,
            ),
            (
                "recursion collapses",
                py_event(json!([f("a"), f("r"), f("r"), f("r")]), "E", ""),
                py_event(json!([f("a"), f("r")]), "E", ""),
                Rel::Same,
            ),
            (
                "non-adjacent repeats are no recursion",
                py_event(json!([f("r"), f("a"), f("r")]), "E", ""),
                py_event(json!([f("r"), f("a")]), "E", ""),
                Rel::Disjoint,
            ),
            (
                "same function on other lines is no recursion",
                py_event(
                    json!([{"function": "r", "lineno": 1, "in_app": true}, {"function": "r", "lineno": 2, "in_app": true}]),
                    "E",
                    "",
                ),
                py_event(
                    json!([{"function": "r", "lineno": 1, "in_app": true}]),
                    "E",
                    "",
                ),
                Rel::Disjoint,
            ),
            (
                "exception beats threads",
                json!({"exception": [{"type": "E"}], "threads": [thread(true, false, "x")]}),
                json!({"exception": [{"type": "E"}]}),
                Rel::Same,
            ),
            (
                "crashed thread is chosen",
                json!({"threads": [thread(true, false, "a"), thread(false, true, "b")]}),
                json!({"threads": [thread(false, false, "c"), thread(true, false, "a")]}),
                Rel::Same,
            ),
            (
                "else the current thread",
                json!({"threads": [thread(false, false, "z"), thread(false, true, "a")]}),
                json!({"threads": {"values": [thread(false, false, "a")]}}),
                Rel::Same,
            ),
            (
                "crashed thread's stack counts",
                json!({"threads": [thread(true, false, "a")]}),
                json!({"threads": [thread(true, false, "b")]}),
                Rel::Disjoint,
            ),
            (
                "ambiguous threads fall through to message",
                with(
                    msg("m"),
                    "threads",
                    json!([thread(false, false, "a"), thread(false, false, "b")]),
                ),
                msg("m"),
                Rel::Same,
            ),
            (
                "threads beat the top-level stacktrace",
                json!({"threads": [thread(true, false, "a")], "stacktrace": {"frames": [f("zzz")]}}),
                json!({"threads": [thread(true, false, "a")]}),
                Rel::Same,
            ),
            (
                "top-level stacktrace groups",
                json!({"stacktrace": {"frames": [f("a")]}}),
                json!({"stacktrace": {"frames": [f("b")]}}),
                Rel::Disjoint,
            ),
            (
                "top-level stacktrace beats message",
                with(msg("one"), "stacktrace", json!({"frames": [f("a")]})),
                with(msg("two"), "stacktrace", json!({"frames": [f("a")]})),
                Rel::Same,
            ),
            (
                "message is parameterized",
                msg("order 42 failed for bob@example.com"),
                msg("order 7 failed for al@example.org"),
                Rel::Same,
            ),
            (
                "message text counts",
                msg("order failed"),
                msg("order succeeded"),
                Rel::Disjoint,
            ),
            (
                "message template wins over formatted",
                json!({"logentry": {"message": "user %s", "formatted": "user a"}}),
                json!({"logentry": {"message": "user %s", "formatted": "user b"}}),
                Rel::Same,
            ),
            (
                "message strategy is labelled",
                msg("E"),
                json!({"exception": [{"type": "E"}]}),
                Rel::Disjoint,
            ),
            (
                "fallback for empty events",
                json!({}),
                json!({"level": "info", "exception": [{}], "message": "  "}),
                Rel::Same,
            ),
            (
                "Rust SDK frames do not count for app",
                rust_panic("sentry_panic::panic_handler", 40),
                rust_panic("sentry_panic::other_handler", 40),
                Rel::SameAppDiffSystem,
            ),
            (
                "Rust panic on another line",
                rust_panic("sentry_panic::panic_handler", 40),
                rust_panic("sentry_panic::panic_handler", 41),
                Rel::Same,
            ),
        ];
        for (name, a, b, rel) in rows {
            let (ha, hb) = (h(&a), h(&b));
            let shared = ha.iter().filter(|x| hb.contains(x)).count();
            let ok = match rel {
                Rel::Same => ha == hb,
                Rel::Disjoint => shared == 0,
                Rel::SameAppDiffSystem => {
                    ha.len() == 2 && hb.len() == 2 && ha[0] == hb[0] && ha[1] != hb[1]
                }
                Rel::DiffAppSameSystem => {
                    ha.len() == 2 && hb.len() == 2 && ha[0] != hb[0] && ha[1] == hb[1]
                }
            };
            assert!(ok, "{name}: expected {rel:?}\n a={ha:?}\n b={hb:?}");
        }
    }

    #[test]
    fn hash_counts_and_format() {
        let rows: Vec<(&str, Value, usize)> = vec![
            ("empty event: fallback", json!({}), 1),
            (
                "checksum",
                json!({"checksum": "abc", "exception": [{"type": "E"}]}),
                1,
            ),
            (
                "custom fingerprint",
                json!({"fingerprint": ["a"], "message": "m"}),
                1,
            ),
            ("message: app == system", json!({"message": "m"}), 1),
            (
                "all frames in-app: system dropped",
                py_event(json!([py_frame("f", "f()", true)]), "E", "v"),
                1,
            ),
            ("mixed frames: app and system", mixed("x()", "v"), 2),
            (
                "no stack: one hash",
                json!({"exception": [{"type": "E", "value": "v"}]}),
                1,
            ),
            (
                "no in-app frames: type+value and stack+type",
                py_event(json!([py_frame("f", "f()", false)]), "E", "v"),
                2,
            ),
            (
                "thread without in-app frames: system only",
                json!({"threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]}),
                1,
            ),
            (
                "hybrid without app variant: one hash",
                json!({"fingerprint": ["x", "{{ default }}"], "threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]}),
                1,
            ),
            (
                "hybrid on empty event: fallback",
                json!({"fingerprint": ["x", "{{ default }}"]}),
                1,
            ),
            (
                "Rust panic: app and system",
                rust_panic("sentry_panic::panic_handler", 1),
                2,
            ),
        ];
        for (name, event, n) in rows {
            let hs = h(&event);
            assert_eq!(hs.len(), n, "{name}: {hs:?}");
            for x in &hs {
                assert!(
                    x.len() == 32 && x.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "{name}: {x}"
                );
            }
        }
        // The thread-only event's one hash is its system variant, so hybrid salting keeps it.
        let hybrid = json!({"fingerprint": ["x", "{{ default }}"], "threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]});
        assert_ne!(h(&hybrid), h(&json!({"fingerprint": ["x"]})));
        // Nothing to salt: a hybrid fingerprint on an empty event falls back like no fingerprint.
        assert_eq!(
            h(&json!({})),
            h(&json!({"fingerprint": ["x", "{{ default }}"]}))
        );
    }

    #[test]
    fn fingerprint_variables() {
        let full = json!({
            "transaction": "/api/x", "logger": "mylog", "level": "warning", "message": "hello",
            "tags": {"t": "v"},
            "exception": {"values": [
                {"type": "Inner", "value": "in"},
                {"type": "KeyError", "value": "'k'", "stacktrace": {"frames": [
                    {"function": "outer", "module": "app.a", "abs_path": "/srv/app/a.py",
                     "filename": "app/a.py", "package": "/usr/lib/libfoo.so", "in_app": true},
                    {"function": "lib", "in_app": false}]}}]}});
        let exc_only = json!({"exception": [{"type": "T", "value": "v",
            "stacktrace": {"frames": [{"filename": "only/name.py"}]}}]});
        let empty = json!({});
        let rows: Vec<(&str, &Value, &str)> = vec![
            ("{{ transaction }}", &full, "/api/x"),
            ("{{ transaction }}", &empty, "<no-transaction>"),
            ("{{ message }}", &full, "hello"),
            ("{{ message }}", &exc_only, "v"),
            ("{{ message }}", &empty, "<no-message>"),
            ("{{ type }}", &full, "KeyError"),
            ("{{ error.type }}", &full, "KeyError"),
            ("{{ type }}", &empty, "<no-type>"),
            ("{{ error.type }}", &empty, "<no-type>"),
            ("{{ value }}", &full, "'k'"),
            ("{{ error.value }}", &full, "'k'"),
            ("{{ value }}", &empty, "<no-value>"),
            ("{{ error.value }}", &empty, "<no-value>"),
            ("{{ function }}", &full, "outer"),
            ("{{ stack.function }}", &full, "outer"),
            ("{{ function }}", &exc_only, "<no-function>"),
            ("{{ stack.function }}", &empty, "<no-function>"),
            ("{{ path }}", &full, "/srv/app/a.py"),
            ("{{ stack.abs_path }}", &full, "/srv/app/a.py"),
            ("{{ path }}", &exc_only, "only/name.py"),
            ("{{ stack.abs_path }}", &empty, "<no-abs-path>"),
            ("{{ stack.filename }}", &full, "app/a.py"),
            ("{{ stack.filename }}", &empty, "<no-filename>"),
            ("{{ module }}", &full, "app.a"),
            ("{{ stack.module }}", &full, "app.a"),
            ("{{ module }}", &exc_only, "<no-module>"),
            ("{{ package }}", &full, "libfoo.so"),
            ("{{ stack.package }}", &full, "libfoo.so"),
            ("{{ package }}", &empty, "<no-package>"),
            ("{{ level }}", &full, "warning"),
            // An absent level reads as `error` in the event model, so `<no-level>` never shows.
            ("{{ level }}", &empty, "error"),
            ("{{ logger }}", &full, "mylog"),
            ("{{ logger }}", &empty, "<no-logger>"),
            ("{{ tags.t }}", &full, "v"),
            ("{{ tags.missing }}", &full, "<no-value-for-tag-missing>"),
            ("{{type}}", &full, "KeyError"),
            ("{{  type\t}}", &full, "KeyError"),
            ("{{ nope }}", &full, "{{ nope }}"),
            ("{{ type }}!", &full, "{{ type }}!"),
            ("x {{ type }}", &full, "x {{ type }}"),
            ("{{ a b }}", &full, "{{ a b }}"),
            ("{{}}", &full, "{{}}"),
        ];
        for (entry, event, expected) in rows {
            assert_eq!(
                h(&with(event.clone(), "fingerprint", json!([entry]))),
                h(&json!({"fingerprint": [expected]})),
                "{entry} should resolve to {expected}"
            );
        }
        // A literal that happens to look like a fallback is just that literal.
        assert_ne!(
            h(&json!({"fingerprint": ["{{ type }}"]})),
            h(&json!({"fingerprint": ["KeyError"]}))
        );
    }

    #[test]
    fn fingerprint_var_parsing() {
        let rows = [
            ("{{ default }}", Some("default")),
            ("{{default}}", Some("default")),
            ("{{ tags.x }}", Some("tags.x")),
            ("{{}}}", Some("}")),
            ("{{}}", None),
            ("{{ }}", None),
            ("{{ a b }}", None),
            ("{ default }", None),
            ("x{{ default }}", None),
            ("{{", None),
            ("", None),
        ];
        for (entry, expected) in rows {
            assert_eq!(fingerprint_var(entry), expected, "{entry:?}");
        }
    }

    #[test]
    fn frame_components() {
        type Items = &'static [(&'static str, &'static str)];
        let long_line = "x".repeat(121);
        let max_line = "y".repeat(120);
        let wide_line = "é".repeat(120); // 240 bytes but 120 chars
        let rows: Vec<(&str, &str, Value, Items)> = vec![
            (
                "module over filename",
                "python",
                json!({"module": "app.views", "filename": "app/views.py", "function": "index"}),
                &[("module", "app.views"), ("function", "index")],
            ),
            (
                "filename basename, lowercased",
                "python",
                json!({"filename": "App/Views.PY", "function": "f"}),
                &[("filename", "views.py"), ("function", "f")],
            ),
            (
                "windows basename",
                "other",
                json!({"filename": "C:\\App\\Main.cs"}),
                &[("filename", "main.cs")],
            ),
            (
                "abs_path when no filename",
                "other",
                json!({"abs_path": "/srv/x/Y.rb"}),
                &[("filename", "y.rb")],
            ),
            (
                "URL abs_path drops the filename",
                "javascript",
                json!({"filename": "app.js", "abs_path": "https://example.com/app.js", "function": "foo"}),
                &[("function", "foo")],
            ),
            (
                "http URL too",
                "other",
                json!({"filename": "app.js", "abs_path": "HTTP://example.com/app.js"}),
                &[],
            ),
            (
                "<anonymous> filename",
                "javascript",
                json!({"filename": "<anonymous>", "function": "foo"}),
                &[("function", "foo")],
            ),
            (
                "[native code] filename",
                "other",
                json!({"filename": "[native code]", "function": "foo"}),
                &[("function", "foo")],
            ),
            (
                "context line, whitespace collapsed",
                "python",
                json!({"function": "f", "context_line": "   x  =\t1  "}),
                &[("function", "f"), ("context_line", "x = 1")],
            ),
            (
                "context line over 120 chars",
                "python",
                json!({"function": "f", "context_line": long_line}),
                &[("function", "f")],
            ),
            (
                "context line of whitespace only",
                "python",
                json!({"function": "f", "context_line": " \t "}),
                &[("function", "f")],
            ),
            (
                "context line for node",
                "node",
                json!({"function": "f", "context_line": "a()"}),
                &[("function", "f"), ("context_line", "a()")],
            ),
            (
                "context line for php",
                "php",
                json!({"function": "f", "context_line": "a()"}),
                &[("function", "f"), ("context_line", "a()")],
            ),
            (
                "context line for ruby",
                "ruby",
                json!({"function": "f", "context_line": "a()"}),
                &[("function", "f"), ("context_line", "a()")],
            ),
            (
                "no context line for java",
                "java",
                json!({"function": "f", "context_line": "a()"}),
                &[("function", "f")],
            ),
            (
                "no context line for native",
                "native",
                json!({"function": "f", "context_line": "a()"}),
                &[("function", "f")],
            ),
            (
                "frame platform overrides event platform",
                "native",
                json!({"function": "f", "context_line": "a()", "platform": "python"}),
                &[("function", "f"), ("context_line", "a()")],
            ),
            (
                "JS: part after the last dot",
                "javascript",
                json!({"function": "Foo.prototype.bar"}),
                &[("function", "bar")],
            ),
            (
                "JS: Object.<anonymous>",
                "node",
                json!({"function": "Object.<anonymous>", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "JS: Object.?",
                "node",
                json!({"function": "Object.?", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "JS: <anonymous function>",
                "javascript",
                json!({"function": "<anonymous function>", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "JS: Anonymous function",
                "javascript",
                json!({"function": "Anonymous function", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "JS: Firefox foo/<",
                "javascript",
                json!({"function": "foo/<", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "JS: eval frame ignored",
                "javascript",
                json!({"function": "eval", "filename": "x.js"}),
                &[],
            ),
            (
                "JS: native code frame ignored",
                "javascript",
                json!({"function": "f", "abs_path": "[native code]"}),
                &[],
            ),
            (
                "JS: eval code frame ignored",
                "node",
                json!({"function": "f", "abs_path": "eval code"}),
                &[],
            ),
            (
                "JS: module that is the abs_path tail",
                "javascript",
                json!({"module": "a/b", "abs_path": "/x/a/b", "filename": "b.js"}),
                &[("filename", "b.js")],
            ),
            (
                "JS: no context without function on a URL",
                "javascript",
                json!({"abs_path": "https://x/a.js", "context_line": "a()"}),
                &[],
            ),
            (
                "JS: sourcemapped function dropped for context",
                "javascript",
                json!({"function": "xY", "context_line": "a()", "data": {"sourcemap": "https://x/a.map"}}),
                &[("context_line", "a()")],
            ),
            (
                "Ruby: block",
                "ruby",
                json!({"function": "block (2 levels) in foo"}),
                &[("function", "block")],
            ),
            (
                "Ruby: erb suffix",
                "ruby",
                json!({"function": "_app_views_index_html_erb__1234567_89012345"}),
                &[("function", "_app_views_index_html_erb")],
            ),
            (
                "Ruby: short digits kept",
                "ruby",
                json!({"function": "foo__12_34"}),
                &[("function", "foo__12_34")],
            ),
            (
                "PHP: [Anonymous class]",
                "php",
                json!({"function": "[Anonymous class]", "module": "m"}),
                &[("module", "m")],
            ),
            (
                "PHP: class@anonymous method",
                "php",
                json!({"function": "class@anonymous\u{0}/in/x.php:3$0::handle"}),
                &[("function", "handle")],
            ),
            (
                "Java: lambda$",
                "java",
                json!({"function": "lambda$main$0", "module": "com.Foo"}),
                &[("module", "com.Foo")],
            ),
            (
                "Java: $$Lambda$ module",
                "java",
                json!({"module": "com.Foo$$Lambda$12/0x1234", "filename": "Foo.java"}),
                &[("filename", "foo.java")],
            ),
            (
                "Java: generated accessor",
                "java",
                json!({"module": "sun.reflect.GeneratedMethodAccessor42"}),
                &[("module", "sun.reflect.GeneratedMethodAccessor")],
            ),
            (
                "Java: CGLIB proxy",
                "java",
                json!({"module": "com.Foo$$EnhancerByCGLIB$$abc123"}),
                &[("module", "com.Foo$$EnhancerByCGLIB$$<auto>")],
            ),
            (
                "native: <unknown>",
                "native",
                json!({"function": "<unknown>"}),
                &[],
            ),
            (
                "native: <redacted>",
                "cocoa",
                json!({"function": "<redacted>", "filename": "a.m"}),
                &[("filename", "a.m")],
            ),
            (
                "native: Rust turbofish",
                "native",
                json!({"function": "std::panic::catch_unwind::<std::rt::lang_start_internal::{closure#0}, isize>"}),
                &[("function", "std::panic::catch_unwind")],
            ),
            (
                "native: Rust closure kept",
                "native",
                json!({"function": "app::run::{{closure}}"}),
                &[("function", "app::run::{{closure}}")],
            ),
            (
                "native: C++ arguments",
                "native",
                json!({"function": "foo::bar(int, char const*) const"}),
                &[("function", "foo::bar const")],
            ),
            (
                "native: C++ generics",
                "c",
                json!({"function": "std::vector<int, std::allocator<int> >::at(unsigned long)"}),
                &[("function", "std::vector::at")],
            ),
            (
                "native: Rust qualified path",
                "native",
                json!({"function": "<alloc::boxed::Box<dyn Fn(u8) -> u8> as core::ops::function::Fn<(u8,)>>::call"}),
                &[(
                    "function",
                    "<alloc::boxed::Box as core::ops::function::Fn>::call",
                )],
            ),
            (
                "native: C++ operator<<",
                "native",
                json!({"function": "Foo::operator<<(int)"}),
                &[("function", "Foo::operator<<")],
            ),
            (
                "C#: raw_function preferred",
                "csharp",
                json!({"function": "Short", "raw_function": "Ns.Type.Method(int)"}),
                &[("function", "Ns.Type.Method")],
            ),
            (
                "other: function untouched",
                "go",
                json!({"function": "main.(*T).Run"}),
                &[("function", "main.(*T).Run")],
            ),
            (
                "raw_function fallback",
                "python",
                json!({"raw_function": "raw"}),
                &[("function", "raw")],
            ),
            (
                "empty frame",
                "python",
                json!({"lineno": 3, "instruction_addr": "0x1"}),
                &[],
            ),
        ];
        let check = |name: &str, platform: &str, frame: &Value, expected: &[(&str, &str)]| {
            let text = serde_json::to_string(frame).unwrap();
            let frame: Frame<'_> = serde_json::from_str(&text).unwrap();
            let got: Vec<(&str, String)> = frame_items(&frame, platform)
                .into_iter()
                .map(|(l, v)| (l, v.into_owned()))
                .collect();
            let want: Vec<(&str, String)> =
                expected.iter().map(|(l, v)| (*l, v.to_string())).collect();
            assert_eq!(got, want, "{name}");
        };
        for (name, platform, frame, expected) in &rows {
            check(name, platform, frame, expected);
        }
        check(
            "120-char line kept",
            "python",
            &json!({"context_line": max_line}),
            &[("context_line", max_line.as_str())],
        );
        check(
            "120 wide chars kept",
            "python",
            &json!({"context_line": wide_line}),
            &[("context_line", wide_line.as_str())],
        );
    }

    #[test]
    fn js_single_url_frame_is_ignored() {
        let lone = json!({"platform": "javascript", "exception": [{"type": "E", "value": "v",
            "stacktrace": {"frames": [{"abs_path": "https://x/a.js", "context_line": "a()", "lineno": 1}]}}]});
        assert_eq!(
            h(&lone),
            h(&json!({"exception": [{"type": "E", "value": "v"}]}))
        );
    }

    #[test]
    fn in_app_rules() {
        let rows: Vec<(Value, bool)> = vec![
            (json!({"function": "app::f", "in_app": true}), true),
            (json!({"function": "app::f", "in_app": false}), false),
            (json!({"function": "app::f"}), false),
            (
                json!({"function": "f", "filename": "/venv/lib/site-packages/x.py"}),
                false,
            ),
            (
                json!({"function": "f", "abs_path": "/app/node_modules/x.js"}),
                false,
            ),
            (
                json!({"function": "f", "filename": "/usr/lib/python3/dist-packages/x.py"}),
                false,
            ),
        ];
        let mut rows = rows;
        for prefix in NOT_APP_FUNCTION_PREFIXES {
            rows.push((
                json!({"function": format!("{prefix}x"), "in_app": true}),
                false,
            ));
        }
        rows.push((
            json!({"raw_function": "sentry_core::x", "in_app": true}),
            false,
        ));
        for (frame, expected) in rows {
            let text = serde_json::to_string(&frame).unwrap();
            let parsed: Frame<'_> = serde_json::from_str(&text).unwrap();
            assert_eq!(is_in_app(&parsed), expected, "{frame}");
        }
        assert!(!is_third_party_path(
            &serde_json::from_str::<Frame<'_>>(r#"{"filename":"app/x.py"}"#).unwrap()
        ));
        assert!(is_third_party_path(
            &serde_json::from_str::<Frame<'_>>(r#"{"filename":"/site-packages/x.py"}"#).unwrap()
        ));
    }

    #[test]
    fn crash_frame_rules() {
        let fr = |name: &str, in_app: Option<bool>| match in_app {
            Some(b) => json!({"function": name, "in_app": b}),
            None => json!({"function": name}),
        };
        let rows: Vec<(&str, Value, Option<&str>)> = vec![
            (
                "last in-app frame",
                json!({"exception": [{"stacktrace": {"frames": [fr("a", Some(true)), fr("b", Some(true)), fr("c", Some(false))]}}]}),
                Some("b"),
            ),
            (
                "else the last frame",
                json!({"exception": [{"stacktrace": {"frames": [fr("a", Some(false)), fr("b", None)]}}]}),
                Some("b"),
            ),
            (
                "main exception is the last",
                json!({"exception": [{"stacktrace": {"frames": [fr("inner", Some(true))]}}, {"stacktrace": {"frames": [fr("outer", Some(true))]}}]}),
                Some("outer"),
            ),
            (
                "top-level stacktrace",
                json!({"exception": [{"type": "E"}], "stacktrace": {"frames": [fr("s", None)]}}),
                Some("s"),
            ),
            (
                "crashed thread",
                json!({"threads": [thread(false, false, "x"), thread(true, false, "t")]}),
                Some("t"),
            ),
            (
                "SDK frames skipped",
                rust_panic("sentry_panic::panic_handler", 1),
                Some("my_app::level3"),
            ),
            ("nothing", json!({"exception": [{"type": "E"}]}), None),
            ("empty frames", json!({"stacktrace": {"frames": []}}), None),
        ];
        for (name, event, expected) in rows {
            let bytes = serde_json::to_vec(&event).unwrap();
            let event = parse(&bytes).unwrap();
            assert_eq!(
                crash_frame(&event).and_then(|f| f.function.as_deref()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn message_normalization() {
        let rows = [
            ("plain text", "plain text"),
            ("bad 42", "bad <int>"),
            ("x -7 y", "x <int> y"),
            ("abc123 v2", "abc123 v2"),
            ("pi 3.14 and -2.5", "pi <float> and <float>"),
            ("mail jane.doe+x@example.com now", "mail <email> now"),
            ("GET https://x.example.com/a?b=1 failed", "GET <url> failed"),
            ("ws://host:80/x", "<url>"),
            (
                "connect db.example.com refused",
                "connect <hostname> refused",
            ),
            ("host API.Example.ORG", "host <hostname>"),
            ("java.io.IOException: x", "java.io.IOException: x"),
            ("from 10.0.0.1 ok", "from <ip> ok"),
            ("v6 fe80::1ff:fe23:4567:890a", "v6 <ip>"),
            ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "v6 <ip>"),
            ("path abc::add", "path abc::add"),
            ("id 123e4567-e89b-12d3-a456-426614174000", "id <uuid>"),
            (
                "commit da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "commit <sha1>",
            ),
            ("md5 d41d8cd98f00b204e9800998ecf8427e", "md5 <md5>"),
            ("at 2024-01-02T03:04:05Z", "at <date>"),
            ("at 2024-01-02T03:04:05.123456+02:00!", "at <date>!"),
            ("at 2024-01-02 03:04:05.123", "at <date>"),
            ("Mon, 02 Jan 2006 15:04:05 MST", "<date>"),
            ("Mon, 02 Jan 2006 15:04:05 -0700", "<date>"),
            ("Monday, 02-Jan-06 15:04:05 MST", "<date>"),
            ("Mon Jan  2 15:04:05 2006", "<date>"),
            ("at 3:04PM", "at <date>"),
            ("at 3:04:05 pm", "at <date>"),
            ("on 2024-01-02", "on <date>"),
            ("at 12:34:56", "at <date>"),
            ("datetime.datetime(2024, 1, 2, 3, 4)", "<date>"),
            ("took 150ms", "took <duration>"),
            ("took 1.5s", "took <duration>"),
            ("addr 0xdeadBEEF", "addr <hex>"),
            ("id='abc' name=\"x y\"", "id=<quoted_str> name=<quoted_str>"),
            ("flag=true other=False", "flag=<bool> other=<bool>"),
            ("x=5", "x=<int>"),
            ("true story", "true story"),
            ("a\n\nb\nc", "a\nb..."),
            ("  \n a \n", "a"),
            ("a\r\nb", "a\nb"),
            ("a\nb\n\n", "a\nb"),
            ("", ""),
            ("é 42 ü", "é <int> ü"),
            ("用户 42 未找到", "用户 <int> 未找到"),
        ];
        for (input, expected) in rows {
            assert_eq!(normalize_message(input), expected, "{input:?}");
        }
    }

    #[test]
    fn param_groups_match_names() {
        let names: Vec<&str> = PARAMS.capture_names().flatten().collect();
        assert_eq!(names, PARAM_NAMES);
        assert_eq!(PARAMS.captures_len(), PARAM_NAMES.len() + 1);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let weird = [
            r#"{"exception":5,"threads":"x","stacktrace":[1],"fingerprint":{"a":1}}"#,
            r#"{"exception":[{"stacktrace":{"frames":[{"function":"<<<(((","filename":"/"},{"function":">>>)))<","abs_path":"\\"}]}}]}"#,
            r#"{"fingerprint":["{{ tags.é }}","{{}}}","{{ default }}"],"tags":[["é","ü"]]}"#,
            r#"{"exception":[{"mechanism":{"meta":{"ns_error":{"code":"x","domain":7}}},"value":"\u0000\u0000"}]}"#,
            r#"{"platform":"javascript","stacktrace":{"frames":[{"function":".","context_line":"é"},{"function":"","abs_path":"h"}]}}"#,
            r#"{"platform":"ruby","stacktrace":{"frames":[{"function":"__","in_app":true},{"function":"x__é_1234","in_app":true}]}}"#,
            r#"{"message":"é\n\n\n😀 0x 1.s =' =\" =tru","checksum":""}"#,
        ];
        for w in weird {
            let e = parse(w.as_bytes()).unwrap();
            assert!(!hashes(&e).is_empty(), "{w}");
            let _ = crash_frame(&e);
        }
        for s in [
            "<",
            "(",
            ">",
            ")",
            "<>()",
            "operator",
            "::<",
            "é<ü>(ö)",
            "-> >",
            "<a<b>>::c",
        ] {
            let _ = trim_native_function(s);
            let _ = normalize_message(s);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_panic(a in "\\PC*", b in "[<>()=:.\\- 0-9a-fé{}]*") {
            let _ = normalize_message(&a);
            let _ = normalize_message(&b);
            let _ = trim_native_function(&b);
            let _ = strip_erb_suffix(&b);
            let _ = fingerprint_var(&b);
            for platform in ["javascript", "native", "ruby", "php", "java", "python", "csharp"] {
                let event = json!({"platform": platform, "fingerprint": [&a, "{{ default }}", format!("{{{{ {b} }}}}")],
                    "exception": [{"type": &a, "value": &b, "stacktrace": {"frames": [
                        {"function": &b, "module": &a, "filename": &b, "abs_path": &a, "context_line": &b, "in_app": true},
                        {"function": &a, "raw_function": &b, "filename": &a}]}}]});
                proptest::prop_assert!(!h(&event).is_empty());
            }
        }
    }

    #[test]
    fn ns_error_groups_instead_of_value() {
        let ns = |code: i64, value: &str| {
            json!({"platform": "cocoa", "exception": [{"type": "NSError", "value": value,
            "mechanism": {"type": "ns", "meta": {"ns_error": {"domain": "D", "code": code}}}}]})
        };
        assert_eq!(h(&ns(1, "a")), h(&ns(1, "b")));
        assert_ne!(h(&ns(1, "a")), h(&ns(2, "a")));
    }

    // --- Real SDK captures ------------------------------------------------------------------

    /// The event item of a captured envelope: its third line.
    fn envelope_event(body: &[u8]) -> &[u8] {
        body.split(|b| *b == b'\n').nth(2).expect("an event line")
    }

    macro_rules! capture {
        ($path:literal) => {
            envelope_event(include_bytes!(concat!(
                "../fixtures/sdk-captures/",
                $path,
                "/body.decoded"
            )))
        };
    }

    fn captures() -> Vec<(&'static str, &'static [u8])> {
        vec![
            (
                "py-br exception",
                capture!("python-brotli-2.75.0/exception/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br chained",
                capture!("python-brotli-2.75.0/chained/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br message",
                capture!("python-brotli-2.75.0/message/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br fingerprint",
                capture!("python-brotli-2.75.0/fingerprint/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br large",
                capture!("python-brotli-2.75.0/large/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br twice 1",
                capture!("python-brotli-2.75.0/twice/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-br twice 2",
                capture!("python-brotli-2.75.0/twice/0002-POST-api-42-envelope-event"),
            ),
            (
                "py-gz exception",
                capture!("python-nobrotli-2.75.0/exception/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-gz chained",
                capture!("python-nobrotli-2.75.0/chained/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-gz message",
                capture!("python-nobrotli-2.75.0/message/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-gz fingerprint",
                capture!("python-nobrotli-2.75.0/fingerprint/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-gz twice 1",
                capture!("python-nobrotli-2.75.0/twice/0001-POST-api-42-envelope-event"),
            ),
            (
                "py-gz twice 2",
                capture!("python-nobrotli-2.75.0/twice/0002-POST-api-42-envelope-event"),
            ),
            (
                "rust exception",
                capture!("rust-0.49.5/exception/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust chained",
                capture!("rust-0.49.5/chained/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust message",
                capture!("rust-0.49.5/message/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust fingerprint",
                capture!("rust-0.49.5/fingerprint/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust large",
                capture!("rust-0.49.5/large/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust twice 1",
                capture!("rust-0.49.5/twice/0001-POST-api-42-envelope-event"),
            ),
            (
                "rust twice 2",
                capture!("rust-0.49.5/twice/0002-POST-api-42-envelope-event"),
            ),
        ]
    }

    fn hashes_of(name: &str) -> Vec<String> {
        let all = captures();
        let (_, bytes) = all.iter().find(|(n, _)| *n == name).expect(name);
        hashes(&parse(bytes).expect(name))
    }

    #[test]
    fn captured_events_group() {
        let expected_counts = [
            ("py-br exception", 1), // all frames in-app: app == system
            ("py-br chained", 1),
            ("py-br message", 1),
            ("py-br fingerprint", 1),
            ("rust exception", 2), // SDK and std frames make system differ from app
            ("rust chained", 1),   // no stack traces: types and values
            ("rust fingerprint", 2),
        ];
        for (name, bytes) in captures() {
            let event = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let hs = hashes(&event);
            assert!(!hs.is_empty(), "{name}");
            let mut dedup = hs.clone();
            dedup.dedup();
            assert_eq!(dedup, hs, "{name}");
            if let Some((_, n)) = expected_counts.iter().find(|(n, _)| *n == name) {
                assert_eq!(hs.len(), *n, "{name}: {hs:?}");
            }
        }
        for (a, b) in [
            ("py-br twice 1", "py-br twice 2"),
            ("py-gz twice 1", "py-gz twice 2"),
            ("rust twice 1", "rust twice 2"),
            ("py-br exception", "py-gz exception"),
            ("py-br message", "rust message"),
        ] {
            assert_eq!(hashes_of(a), hashes_of(b), "{a} vs {b}");
        }
        for (a, b) in [
            ("py-br exception", "py-br twice 1"),
            ("py-br exception", "py-br chained"),
            ("py-br exception", "py-br fingerprint"),
            ("rust exception", "rust twice 1"),
            ("rust exception", "rust fingerprint"),
            ("py-br message", "py-br large"),
        ] {
            let (ha, hb) = (hashes_of(a), hashes_of(b));
            assert!(ha.iter().all(|x| !hb.contains(x)), "{a} vs {b}");
        }
        let msg = hashes(&parse(br#"{"message":"harness warning message"}"#).unwrap());
        assert_eq!(hashes_of("py-br message"), msg);
    }

    #[test]
    fn captured_rust_panic_points_at_app_code() {
        let all = captures();
        let (_, bytes) = all.iter().find(|(n, _)| *n == "rust exception").unwrap();
        let event = parse(bytes).unwrap();
        let frame = crash_frame(&event).unwrap();
        assert_eq!(
            frame.function.as_deref(),
            Some("sentry_rust_client::level3")
        );
    }
}

//! Stack frames for grouping (reference 6.4): in-app decision, per-frame components, native names.

use super::rules::{Enhancements, FrameChange};
use super::tree::{Tree, APP, SYSTEM};
use super::Flags;
use crate::protocol::event::{Frame, Stacktrace};
use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Adds a `stacktrace` node with one `frame` node per frame (oldest first) and closes it; returns
/// its index. Stack trace rules run first: they may move frames in or out of the app and switch
/// frames on or off for grouping.
pub(super) fn add_stacktrace<'e>(
    tree: &mut Tree<'e>,
    stacktrace: Option<&'e Stacktrace<'_>>,
    label: Option<&'static str>,
    value: &'static str,
    event_platform: &str,
    enhancements: Option<&Enhancements>,
    flags: Flags,
) -> usize {
    let st = tree.open("stacktrace", label, value);
    let frames = stacktrace.map_or(&[][..], |s| s.frames.0.as_slice());
    let changes: Vec<FrameChange> = match enhancements {
        Some(rules) if !frames.is_empty() => {
            let in_app: Vec<bool> = frames.iter().map(is_in_app).collect();
            rules.apply(frames, event_platform, &in_app)
        }
        _ => Vec::new(),
    };
    let mut prev: Option<&Frame<'_>> = None;
    let mut last = 0;
    for (k, frame) in frames.iter().enumerate() {
        let change = changes.get(k);
        let force = change.is_some_and(|c| c.group == Some(true));
        // Recursion: a frame identical to its caller adds nothing but depth, which must not split
        // groups (a recursion 5 deep and 6 deep is the same bug).
        let recursion = !force && prev.is_some_and(|p| same_location(p, frame, flags));
        let f = tree.open("frame", Some("frame"), "");
        last = f;
        let ignored = if !recursion || tree.explain {
            frame_components(tree, frame, event_platform, flags, force)
        } else {
            None
        };
        tree.close(f);
        if recursion {
            tree.off(f, &[APP, SYSTEM], || "ignored due to recursion".into());
        } else if let Some(hint) = ignored {
            tree.off(f, &[APP, SYSTEM], || hint.into());
        } else if let Some(c) = change.filter(|c| c.group == Some(false)) {
            tree.off(f, &[APP, SYSTEM], || {
                rule_hint("ignored by stack trace rule", &c.group_rule)
            });
        }
        match change.and_then(|c| c.in_app.map(|b| (b, c))) {
            Some((false, c)) => tree.off(f, &[APP], || {
                rule_hint("marked out of app by stack trace rule", &c.in_app_rule)
            }),
            Some((true, _)) => {}
            None if !is_in_app(frame) => tree.off(f, &[APP], || "non app frame".into()),
            None => {}
        }
        prev = Some(frame);
    }
    // JS: a lone frame without a function pointing at a URL is just "some script": ignore it.
    if let [only] = frames {
        let forced = changes.first().is_some_and(|c| c.group == Some(true));
        if !forced
            && family(frame_platform(only, event_platform)) == Family::Js
            && only.function.non_empty().is_none()
            && only.abs_path.non_empty().is_some_and(is_url)
        {
            tree.off(last, &[APP, SYSTEM], || {
                "ignored single non-URL JavaScript frame".into()
            });
        }
    }
    tree.close(st);
    if frames.is_empty() {
        tree.note(st, APP, "ignored because it contains no frames");
        tree.note(st, SYSTEM, "ignored because it contains no frames");
    } else {
        tree.note(st, APP, "ignored because it contains no in-app frames");
        tree.note(
            st,
            SYSTEM,
            "ignored because it contains no contributing frames",
        );
    }
    st
}

fn rule_hint(what: &str, rule: &Option<String>) -> Cow<'static, str> {
    match rule {
        Some(r) => Cow::Owned(format!("{what} ({r})")),
        None => Cow::Owned(what.to_owned()),
    }
}

/// Adds the `[module, filename, function, context-line]` leaves of one frame (reference 6.4).
/// Returns why the whole frame is ignored, if it is; `force` (a `+group` rule) keeps it anyway.
fn frame_components<'e>(
    tree: &mut Tree<'e>,
    frame: &'e Frame<'_>,
    event_platform: &str,
    flags: Flags,
    force: bool,
) -> Option<&'static str> {
    let fam = family(frame_platform(frame, event_platform));
    let abs_path = frame.abs_path.non_empty();
    let raw_fn = frame.function.non_empty();

    if !force
        && fam == Family::Js
        && (raw_fn == Some("eval")
            || abs_path.is_some_and(|p| {
                matches!(
                    p,
                    "[native code]" | "native code" | "eval code" | "<anonymous>"
                )
            }))
    {
        return Some("ignored because the frame is eval or native code");
    }

    let module = frame
        .module
        .non_empty()
        .and_then(|m| module_value(m, fam, abs_path));
    let url = abs_path.is_some_and(is_url);
    let filename = if module.is_some() || url {
        None
    } else {
        filename_value(frame)
    };
    let context = context_value(frame, fam, raw_fn, abs_path);
    let mut function = function_value(frame, fam, flags);
    let mut sourcemapped = None;
    if fam == Family::Js
        && context.is_some()
        && frame
            .data
            .as_ref()
            .is_some_and(|d| d.sourcemap.non_empty().is_some())
    {
        // Minified names behind a source map are unstable; the context line identifies the frame.
        sourcemapped = function.take();
    }

    let any = module.is_some() || filename.is_some() || function.is_some() || context.is_some();
    if let Some(m) = module {
        tree.leaf("module", "module", m);
    }
    if let Some(f) = filename {
        tree.leaf("filename", "filename", f);
    } else {
        let hint = if url {
            "ignored because frame points to a URL"
        } else {
            "module takes precedence"
        };
        tree.hidden("filename", "filename", || filename_value(frame), hint);
    }
    if let Some(f) = function {
        tree.leaf("function", "function", f);
    } else if let Some(f) = sourcemapped {
        tree.hidden(
            "function",
            "function",
            || Some(f),
            "ignored because sourcemap used and context line available",
        );
    }
    if let Some(c) = context {
        tree.leaf("context-line", "context_line", c);
    }
    if !any && fam == Family::Native && flags.package_fallback {
        // Our extension for frames nobody symbolicated (only `package` + `instruction_addr`): the
        // binary or library they ran in. Crashes of different apps or libraries then never share
        // a stack; we do not symbolicate, and addresses move with every build and ASLR slide.
        if let Some(p) = frame.package.non_empty().and_then(package_basename) {
            tree.leaf("package", "package", Cow::Borrowed(p));
        }
    }
    None
}

/// The file name of a package path (`/usr/lib/libc.so.6` → `libc.so.6`, `C:\app\game.exe` →
/// `game.exe`).
pub(super) fn package_basename(package: &str) -> Option<&str> {
    package
        .rsplit(['/', '\\'])
        .next()
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// Platform families with their own frame rules (reference 6.4).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Js,
    Python,
    Php,
    Ruby,
    Java,
    Native,
    CSharp,
    Other,
}

pub(super) fn family(platform: &str) -> Family {
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

/// Whether `b` repeats its caller `a` (recursion). Under `native_names` the names a frame can be
/// hashed by when it has no `function` (`raw_function`, `symbol`) count too: else two different
/// symbols in one package would pass for recursion. The old scheme keeps its hashes.
fn same_location(a: &Frame<'_>, b: &Frame<'_>, flags: Flags) -> bool {
    a.abs_path == b.abs_path
        && a.package == b.package
        && a.module == b.module
        && a.filename == b.filename
        && a.function == b.function
        && a.lineno == b.lineno
        && a.colno == b.colno
        && (!flags.native_names || (a.raw_function == b.raw_function && a.symbol == b.symbol))
}

pub(super) fn frame_platform<'e>(frame: &'e Frame<'_>, event_platform: &'e str) -> &'e str {
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
pub(super) const NOT_APP_FUNCTION_PREFIXES: &[&str] = &[
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
pub(super) fn is_in_app(frame: &Frame<'_>) -> bool {
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

pub(super) fn is_third_party_path(frame: &Frame<'_>) -> bool {
    [&frame.filename, &frame.abs_path].iter().any(|p| {
        p.as_deref()
            .is_some_and(|p| NOT_APP_PATH_FRAGMENTS.iter().any(|f| p.contains(f)))
    })
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

fn function_value<'e>(frame: &'e Frame<'_>, fam: Family, flags: Flags) -> Option<Cow<'e, str>> {
    let function = frame.function.non_empty();
    let raw = frame.raw_function.non_empty();
    let name = if fam == Family::CSharp {
        raw.or(function)?
    } else if fam == Family::Native && flags.native_names {
        // The mangled symbol is stable for one build: better than no name at all.
        function.or(raw).or_else(|| frame.symbol.non_empty())?
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
            let trimmed = if flags.native_names && fam == Family::Native {
                trim_native_function_v2(name)
            } else {
                trim_native_function(name)
            };
            (!trimmed.is_empty()).then_some(trimmed)
        }
        _ => Some(Cow::Borrowed(name)),
    }
}

/// Removes an erb template suffix `__\d{4,}_\d{4,}` (Ruby), which changes with every compile.
pub(super) fn strip_erb_suffix(name: &str) -> &str {
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
pub(super) fn trim_native_function(name: &str) -> Cow<'_, str> {
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

static CXX_LAMBDA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{lambda\([^)]*\)#\d+\}").expect("static regex"));

/// Words in a native signature that are not part of the function's name.
const NATIVE_QUALIFIERS: &[&str] = &[
    "const",
    "volatile",
    "noexcept",
    "&",
    "&&",
    "throws",
    "rethrows",
    "async",
    "static",
    "override",
    "final",
    "virtual",
    "dynamic",
    "@objc",
    "inline",
    "__cdecl",
    "__stdcall",
    "__fastcall",
    "__thiscall",
];

/// Words that start a Swift closure or thunk description, kept as they are.
const SWIFT_PREFIXES: &[&str] = &[
    "closure",
    "implicit",
    "partial",
    "reabstraction",
    "merged",
    "specialized",
    "thunk",
    "protocol",
    "lazy",
    "dispatch",
];

/// Native function names for the `sh-2026-12` scheme, in the spirit of Sentry's
/// `trim_function_name`: besides argument lists and template arguments (as
/// `trim_native_function`), drops return types and trailing qualifiers (`void a::b(int) const`
/// → `a::b`), Swift return types (`-> T`) and closure counters (`closure #1 in A.b()` →
/// `closure in A.b`), Rust's symbol hash (`::h0123456789abcdef`), names `(anonymous namespace)` as
/// `` `anonymous namespace' `` and C++ lambdas as `{lambda}`. Objective-C `-[Class method:]` and
/// `+[...]` names are complete as they are.
pub(super) fn trim_native_function_v2(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    if name.starts_with("-[") || name.starts_with("+[") {
        return Cow::Borrowed(name);
    }
    let mut pre: Cow<'_, str> = Cow::Borrowed(name);
    if pre.contains("(anonymous namespace)") {
        // PROTECTED_SPACE keeps the name one word below; restored at the end.
        pre = Cow::Owned(pre.replace("(anonymous namespace)", "`anonymous\u{1}namespace'"));
    }
    if pre.contains("{lambda(") {
        pre = Cow::Owned(CXX_LAMBDA.replace_all(&pre, "{lambda}").into_owned());
    }
    let mut stripped = trim_native_function(&pre);
    if stripped.starts_with('<') && stripped.contains(' ') {
        // Rust's `<A as Trait>::method`: the leading qualified path is one word.
        stripped = Cow::Owned(protect_leading_group(&stripped));
    }
    let simple = |s: &str| !s.contains([' ', '\t']) && !s.contains("->");
    if simple(&stripped) {
        let short = strip_rust_hash(&stripped).unwrap_or(&stripped);
        if short == name {
            return Cow::Borrowed(name);
        }
        return Cow::Owned(short.replace(PROTECTED_SPACE, " "));
    }
    let mut out = String::with_capacity(stripped.len());
    for (k, segment) in stripped.split(" in ").enumerate() {
        // A return type follows `->` (Swift, Rust); nothing after it names the function.
        let segment = segment.split("->").next().unwrap_or("");
        let words: Vec<&str> = segment
            .split_whitespace()
            .filter(|w| !NATIVE_QUALIFIERS.contains(w))
            .collect();
        let part = if words.first().is_some_and(|w| SWIFT_PREFIXES.contains(w)) {
            words
                .iter()
                .filter(|w| !(w.starts_with('#') && w[1..].bytes().all(|b| b.is_ascii_digit())))
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            match words.as_slice() {
                [] => String::new(),
                [.., op, last] if op.ends_with("operator") => format!("{op} {last}"),
                [.., last] => last.trim_start_matches(['*', '&']).to_owned(),
            }
        };
        if part.is_empty() {
            continue;
        }
        if k > 0 && !out.is_empty() {
            out.push_str(" in ");
        }
        out.push_str(strip_rust_hash(&part).unwrap_or(&part));
    }
    Cow::Owned(out.replace(PROTECTED_SPACE, " "))
}

/// Stands for a space that does not separate words while a name is split into words.
const PROTECTED_SPACE: char = '\u{1}';

/// `s` with the spaces inside its leading `<...>` group protected.
fn protect_leading_group(s: &str) -> String {
    let mut depth = 0usize;
    let mut prev = '\0';
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => depth += 1,
            '>' if prev != '-' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
        out.push(if c == ' ' && depth > 0 {
            PROTECTED_SPACE
        } else {
            c
        });
    }
    out
}

/// `a::b::h0123456789abcdef` → `a::b` (the hash Rust's legacy mangling appends).
fn strip_rust_hash(name: &str) -> Option<&str> {
    let (head, tail) = name.rsplit_once("::h")?;
    (tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit())).then_some(head)
}

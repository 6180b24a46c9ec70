//! Fingerprint entries and their variables, and the crash frame those variables read.

use super::frames::is_in_app;
use super::pick_thread;
use crate::protocol::event::{Event, Frame};
use std::borrow::Cow;

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
pub(super) fn fingerprint_var(entry: &str) -> Option<&str> {
    let inner = entry.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!inner.is_empty() && !inner.contains(char::is_whitespace)).then_some(inner)
}

/// Resolves one fingerprint entry: a known variable becomes its value (or its `<no-...>`
/// fallback); anything else, unknown variables included, stays literal.
pub(super) fn resolve_fingerprint_entry<'e>(event: &'e Event<'_>, entry: &'e str) -> Cow<'e, str> {
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

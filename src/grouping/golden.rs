//! Frozen hashes of the `sh-2026-11` scheme: databases in the field hold them, so they never change.

use super::*;
use crate::protocol::event::parse;
use serde_json::{json, Value};

/// The event item of a captured envelope: its third line.
fn envelope_event(body: &'static [u8]) -> Value {
    let line = body.split(|b| *b == b'\n').nth(2).expect("an event line");
    serde_json::from_slice(line).expect("event JSON")
}

macro_rules! capture {
    ($path:literal) => {
        envelope_event(include_bytes!(concat!(
            "../../fixtures/sdk-captures/",
            $path,
            "/body.decoded"
        )))
    };
}

fn py(function: &str, line: &str, in_app: bool) -> Value {
    json!({"module": "app.mod", "filename": "app/mod.py", "function": function,
           "context_line": line, "in_app": in_app})
}

fn native(function: Option<&str>, package: &str, addr: &str) -> Value {
    match function {
        Some(f) => json!({"function": f, "package": package, "instruction_addr": addr}),
        None => json!({"package": package, "instruction_addr": addr}),
    }
}

/// ~40 varied events; each name is unique.
pub(super) fn events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "python single in-app",
            json!({"platform": "python", "exception": {"values": [
            {"type": "ValueError", "value": "bad 42", "stacktrace": {"frames": [py("main", "main()", true), py("f", "f(1)", true)]}}]}}),
        ),
        (
            "python mixed in_app",
            json!({"platform": "python", "exception": {"values": [
            {"type": "KeyError", "value": "'k'", "stacktrace": {"frames": [py("main", "main()", true), py("lib", "x[k]", false)]}}]}}),
        ),
        (
            "python no in-app frames",
            json!({"platform": "python", "exception": [
            {"type": "E", "value": "v", "stacktrace": {"frames": [py("a", "a()", false)]}}]}),
        ),
        (
            "python site-packages absent in_app",
            json!({"platform": "python", "exception": [
            {"type": "E", "value": "v", "stacktrace": {"frames": [
                {"function": "f", "filename": "/venv/lib/site-packages/x.py", "context_line": "x()"},
                {"function": "g", "filename": "app.py", "in_app": true}]}}]}),
        ),
        (
            "python chained",
            json!({"platform": "python", "exception": {"values": [
            {"type": "KeyError", "value": "k", "stacktrace": {"frames": [py("inner", "d[k]", true)]}},
            {"type": "RuntimeError", "value": "wrapped", "stacktrace": {"frames": [py("outer", "raise X", true)]}}]}}),
        ),
        (
            "python recursion",
            json!({"platform": "python", "exception": [{"type": "RecursionError", "stacktrace": {"frames": [
            py("a", "a()", true), py("r", "r()", true), py("r", "r()", true), py("r", "r()", true)]}}]}),
        ),
        (
            "js browser",
            json!({"platform": "javascript", "exception": [{"type": "TypeError", "value": "x is undefined", "stacktrace": {"frames": [
            {"function": "Object.<anonymous>", "abs_path": "https://example.com/app.js", "filename": "app.js", "lineno": 1, "context_line": "go()", "in_app": true},
            {"function": "Foo.prototype.bar", "abs_path": "https://example.com/app.js", "filename": "app.js", "lineno": 9, "in_app": true},
            {"function": "eval", "abs_path": "https://example.com/app.js", "in_app": true}]}}]}),
        ),
        (
            "js single url frame",
            json!({"platform": "javascript", "exception": [{"type": "Error", "value": "boom", "stacktrace": {"frames": [
            {"abs_path": "https://x/a.js", "context_line": "a()", "lineno": 1}]}}]}),
        ),
        (
            "node modules",
            json!({"platform": "node", "exception": [{"type": "Error", "value": "ECONNREFUSED 10.0.0.1:5432", "stacktrace": {"frames": [
            {"function": "connect", "abs_path": "/srv/node_modules/pg/lib/client.js", "module": "pg.lib:client", "context_line": "socket.connect()"},
            {"function": "handler", "abs_path": "/srv/app/routes.js", "module": "app:routes", "context_line": "await db.connect()", "in_app": true}]}}]}),
        ),
        (
            "js sourcemap",
            json!({"platform": "javascript", "exception": [{"type": "Error", "stacktrace": {"frames": [
            {"function": "xY", "context_line": "doIt()", "abs_path": "webpack:///src/a.js", "data": {"sourcemap": "https://x/a.map"}, "in_app": true}]}}]}),
        ),
        (
            "java",
            json!({"platform": "java", "exception": [{"type": "NullPointerException", "module": "java.lang", "stacktrace": {"frames": [
            {"function": "run", "module": "java.lang.Thread", "filename": "Thread.java", "in_app": false},
            {"function": "lambda$main$0", "module": "com.example.App", "filename": "App.java", "in_app": true},
            {"function": "invoke", "module": "sun.reflect.GeneratedMethodAccessor42", "in_app": false},
            {"function": "handle", "module": "com.example.Svc$$EnhancerByCGLIB$$abc", "filename": "Svc.java", "in_app": true}]}}]}),
        ),
        (
            "java chained causes",
            json!({"platform": "java", "exception": [
            {"type": "SQLException", "value": "timeout", "stacktrace": {"frames": [{"function": "query", "module": "com.db.Conn", "in_app": false}]}},
            {"type": "DataAccessException", "value": "failed", "stacktrace": {"frames": [{"function": "find", "module": "com.example.Repo", "in_app": true}]}}]}),
        ),
        (
            "native segfault no in_app",
            json!({"platform": "native", "exception": [{"type": "SIGSEGV", "value": "Segfault",
            "mechanism": {"type": "signalhandler", "synthetic": true, "handled": false},
            "stacktrace": {"frames": [native(Some("main"), "/usr/bin/app", "0x1000"), native(Some("crash_here(int)"), "/usr/bin/app", "0x1010")]}}]}),
        ),
        (
            "native segfault other stack",
            json!({"platform": "native", "exception": [{"type": "SIGSEGV", "value": "Segfault",
            "mechanism": {"type": "signalhandler", "synthetic": true, "handled": false},
            "stacktrace": {"frames": [native(Some("main"), "/usr/bin/other", "0x1000"), native(Some("other_crash()"), "/usr/bin/other", "0x1010")]}}]}),
        ),
        (
            "minidump unsymbolicated",
            json!({"platform": "native", "exception": [{"type": "Fatal Error", "value": "0x00000000 / 0x00000000",
            "mechanism": {"type": "minidump", "synthetic": true, "handled": false},
            "stacktrace": {"frames": [native(None, "C:\\Windows\\System32\\kernel32.dll", "0x7ff0"), native(None, "C:\\app\\game.exe", "0x140001000")]}}]}),
        ),
        (
            "native c++ names",
            json!({"platform": "native", "exception": [{"type": "std::out_of_range", "value": "vector", "stacktrace": {"frames": [
            {"function": "std::vector<int, std::allocator<int> >::at(unsigned long)", "package": "libstdc++.so", "in_app": false},
            {"function": "void app::(anonymous namespace)::run<int>(int) const", "package": "/usr/bin/app", "in_app": true},
            {"function": "app::Foo::operator()(int)", "in_app": true}]}}]}),
        ),
        (
            "native rust panic",
            json!({"platform": "native", "exception": {"values": [{"type": "panic", "value": "boom",
            "mechanism": {"type": "panic", "handled": false}, "stacktrace": {"frames": [
                {"function": "main", "in_app": true},
                {"function": "std::rt::lang_start", "package": "std", "filename": "rt.rs", "in_app": false},
                {"function": "my_app::level3", "filename": "main.rs", "lineno": 40, "in_app": true},
                {"function": "core::panicking::panic_fmt", "in_app": true},
                {"function": "<sentry_panic::PanicIntegration as sentry_core::integration::Integration>::setup::{{closure}}", "in_app": true},
                {"function": "sentry_backtrace::current_stacktrace", "in_app": false}]}}]}}),
        ),
        (
            "cocoa crashed thread",
            json!({"platform": "cocoa", "exception": [{"type": "EXC_BAD_ACCESS", "value": "KERN_INVALID_ADDRESS at 0x10",
            "thread_id": 0, "mechanism": {"type": "mach", "synthetic": false}}],
            "threads": [{"id": 0, "crashed": true, "stacktrace": {"frames": [
                {"function": "main", "package": "/private/var/App.app/App", "in_app": true},
                {"function": "-[ViewController crash:]", "package": "/private/var/App.app/App", "in_app": true},
                {"function": "objc_msgSend", "package": "/usr/lib/libobjc.A.dylib", "in_app": false}]}},
                {"id": 1, "crashed": false, "stacktrace": {"frames": [{"function": "mach_msg_trap", "package": "libsystem_kernel.dylib"}]}}]}),
        ),
        (
            "cocoa swift",
            json!({"platform": "cocoa", "exception": [{"type": "Fatal error", "value": "Unexpectedly found nil", "stacktrace": {"frames": [
            {"function": "closure #1 (Swift.String) -> () in App.ViewController.load() -> ()", "package": "App", "in_app": true},
            {"function": "static App.Model.parse(Swift.String) throws -> App.Model", "package": "App", "in_app": true}]}}]}),
        ),
        (
            "ns_error",
            json!({"platform": "cocoa", "exception": [{"type": "NSError", "value": "The operation couldn't be completed. (42)",
            "mechanism": {"type": "ns", "meta": {"ns_error": {"domain": "NSURLErrorDomain", "code": -1001}}}}]}),
        ),
        (
            "ns_error with stack",
            json!({"platform": "cocoa", "exception": [{"type": "NSError", "value": "x",
            "mechanism": {"type": "ns", "meta": {"ns_error": {"domain": "D", "code": 3}}},
            "stacktrace": {"frames": [{"function": "-[A b]", "in_app": true}]}}]}),
        ),
        (
            "ruby",
            json!({"platform": "ruby", "exception": [{"type": "NoMethodError", "value": "undefined method `x' for nil", "stacktrace": {"frames": [
            {"function": "block (2 levels) in index", "filename": "app/controllers/a.rb", "context_line": "  x.y  ", "in_app": true},
            {"function": "_app_views_index_html_erb__1234567_89012345", "filename": "app/views/index.html.erb", "in_app": true}]}}]}),
        ),
        (
            "php",
            json!({"platform": "php", "exception": [{"type": "Exception", "value": "oops", "stacktrace": {"frames": [
            {"function": "class@anonymous\u{0}/in/x.php:3$0::handle", "filename": "x.php", "context_line": "throw new Exception()", "in_app": true},
            {"function": "[Anonymous class]", "filename": "y.php", "in_app": true}]}}]}),
        ),
        (
            "csharp",
            json!({"platform": "csharp", "exception": [{"type": "System.InvalidOperationException", "value": "bad", "module": "System", "stacktrace": {"frames": [
            {"function": "Run", "raw_function": "App.Program.Run(System.String[] args)", "module": "App.Program", "in_app": true},
            {"function": "Main", "module": "App.Program", "in_app": true}]}}]}),
        ),
        (
            "go",
            json!({"platform": "go", "exception": [{"type": "*errors.errorString", "value": "fail", "stacktrace": {"frames": [
            {"function": "main.(*T).Run", "module": "main", "filename": "main.go", "in_app": true}]}}]}),
        ),
        (
            "exception without frames",
            json!({"exception": [{"type": "ConnectionError", "value": "refused by 10.0.0.1"}]}),
        ),
        (
            "synthetic no frames",
            json!({"exception": [{"type": "Error", "value": "captured message", "mechanism": {"synthetic": true}}]}),
        ),
        (
            "exception group",
            json!({"platform": "python", "exception": {"values": [
            {"type": "ValueError", "value": "a", "mechanism": {"type": "chained", "exception_id": 2, "parent_id": 0}, "stacktrace": {"frames": [py("a", "raise A", true)]}},
            {"type": "TypeError", "value": "b", "mechanism": {"type": "chained", "exception_id": 1, "parent_id": 0}, "stacktrace": {"frames": [py("b", "raise B", true)]}},
            {"type": "ExceptionGroup", "value": "2 sub-exceptions", "mechanism": {"type": "exceptiongroup", "is_exception_group": true, "exception_id": 0}, "stacktrace": {"frames": [py("g", "raise G", true)]}}]}}),
        ),
        (
            "threads crashed",
            json!({"threads": [
            {"crashed": true, "stacktrace": {"frames": [{"function": "t", "filename": "t.c", "in_app": true}, {"function": "sys", "filename": "s.c"}]}},
            {"current": true, "stacktrace": {"frames": [{"function": "x", "filename": "x.c", "in_app": true}]}}]}),
        ),
        (
            "threads no in-app",
            json!({"threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]}),
        ),
        (
            "threads ambiguous + message",
            json!({"message": "fell through 7", "threads": [
            {"stacktrace": {"frames": [{"function": "a", "in_app": true}]}}, {"stacktrace": {"frames": [{"function": "b", "in_app": true}]}}]}),
        ),
        (
            "top-level stacktrace",
            json!({"message": "m", "stacktrace": {"frames": [{"function": "a", "module": "m", "in_app": true}, {"function": "b", "module": "lib"}]}}),
        ),
        (
            "message",
            json!({"message": "order 42 failed for bob@example.com"}),
        ),
        (
            "logentry template",
            json!({"logentry": {"message": "user %s failed", "formatted": "user a failed", "params": ["a"]}}),
        ),
        (
            "fingerprint custom",
            json!({"fingerprint": ["db", "{{ transaction }}"], "transaction": "/api/x", "message": "m"}),
        ),
        (
            "fingerprint hybrid",
            json!({"platform": "python", "fingerprint": ["{{ default }}", "{{ tags.region }}"], "tags": {"region": "eu"}, "exception": [
            {"type": "KeyError", "value": "'k'", "stacktrace": {"frames": [py("main", "main()", true), py("lib", "x[k]", false)]}}]}),
        ),
        (
            "fingerprint vars",
            json!({"fingerprint": ["{{ type }}", "{{ function }}", "{{ package }}", "{{ level }}", "{{ nope }}"], "level": "warning",
            "exception": [{"type": "KeyError", "stacktrace": {"frames": [{"function": "f", "package": "/usr/lib/libfoo.so", "in_app": true}]}}]}),
        ),
        (
            "checksum",
            json!({"checksum": "abc", "message": "m", "fingerprint": ["x"]}),
        ),
        ("empty", json!({})),
        (
            "hybrid empty",
            json!({"fingerprint": ["x", "{{ default }}"]}),
        ),
        (
            "frame platform override",
            json!({"platform": "native", "exception": [{"type": "E", "stacktrace": {"frames": [
            {"function": "f", "context_line": "a()", "platform": "python", "in_app": true}]}}]}),
        ),
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
            "rust exception",
            capture!("rust-0.49.5/exception/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust chained",
            capture!("rust-0.49.5/chained/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust fingerprint",
            capture!("rust-0.49.5/fingerprint/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust large",
            capture!("rust-0.49.5/large/0001-POST-api-42-envelope-event"),
        ),
    ]
}

/// What `sh-2026-11` returned for each event of `events()` when it was frozen.
#[rustfmt::skip]
const FROZEN: &[(&str, &[&str])] = &[
    ("python single in-app", &["913f7fd1514d081ad44ad3b082f54e02"]),
    ("python mixed in_app", &["7f4cb6a6f8eb5f49ab26b6cbb615909d", "35ac500d1b367a2bf361d6846fbe959c"]),
    ("python no in-app frames", &["222a4deb4eea5a51c371ef80c910c7d3", "28714adadda6f81ce1cfc189a2706cac"]),
    ("python site-packages absent in_app", &["f37231248ddc2a804638979a9e6a7c39", "97801ea25cc9009f1e729b5abc222b41"]),
    ("python chained", &["76752f9ca2c93033f477461d804171df"]),
    ("python recursion", &["8aee066122494cd07baf4bc0290f3a24"]),
    ("js browser", &["805469573d4b03b0b1b75af4b2366135"]),
    ("js single url frame", &["222655f98adea6c8fb92c6625f43a96c"]),
    ("node modules", &["38893cde8a2cae54a48827f4f1452b04", "148c50c8997e4c57aeebf98ad3c560bc"]),
    ("js sourcemap", &["78ac74643944f092445a10d490a93a47"]),
    ("java", &["6deaf79913803f529fb4a39a57ae4ca9", "e96d73131690f35279842fb98f8e6210"]),
    ("java chained causes", &["94ec6d7f51841d118a44fe33d2947014", "60cc15140373013d65fd9611abeb3561"]),
    ("native segfault no in_app", &["7eb16cc7bfd3fe5a59d95f1625fd7afb", "efb003f1bbbdafd0d71329266648e90b"]),
    ("native segfault other stack", &["7eb16cc7bfd3fe5a59d95f1625fd7afb", "e10a33c0108b20a52fd61a08ab7af5c0"]),
    ("minidump unsymbolicated", &["f48fce1eb97bdcff23acd29966bedd83"]),
    ("native c++ names", &["b6aaa5ce42797b5959c49eca8f7c7b87", "c4beb0070c89b59ac9d0585fafc18097"]),
    ("native rust panic", &["0936fa40aafac4578568d8bb41ebf2be", "9987779597cf7a588a1d7f8de050044f"]),
    ("cocoa crashed thread", &["135bdf1dbeec1551eef4d41a46e8d1c4"]),
    ("cocoa swift", &["58a8b34b3b7793a8dde1d33f0e0c5e2d"]),
    ("ns_error", &["898a2ca9b5c01cb88ebf590a89c46b9c"]),
    ("ns_error with stack", &["6fab71b2000c4ed9714ad16362770348"]),
    ("ruby", &["1353eda35c85f1e5cf9b1a977544e753"]),
    ("php", &["a5e91d45547ea897bc48b173e400b1fb"]),
    ("csharp", &["5ca6d790cea7d30821850b1c49588d58"]),
    ("go", &["e95a728de76366db49e5bde9a3bd5381"]),
    ("exception without frames", &["3d0c5cc21a39df1e7c9edc535aaec7d5"]),
    ("synthetic no frames", &["c6ca27e6b901ad8c03a6162e50c33e49"]),
    ("exception group", &["582b1b9b96c59c2e0a587dfa50f1ce91"]),
    ("threads crashed", &["28727ac736eec453409d1a63b9ed15b6", "f42b97eca3ffca929e5798b6acd20b35"]),
    ("threads no in-app", &["aeffa1f24af937bfc83c7670581d193c"]),
    ("threads ambiguous + message", &["29730826cdc60b182e51321e971eb26f"]),
    ("top-level stacktrace", &["2d24bc44508264aa73e7e1beda2b97ba", "b2554d6d0f29ea107c55f15e5930e605"]),
    ("message", &["09c50f1b811fb6a5e3345350b914249c"]),
    ("logentry template", &["6e9a737a751a7cd41796e8c7702db855"]),
    ("fingerprint custom", &["4a23cd461624cf0ca3ac5d0420d7c60a"]),
    ("fingerprint hybrid", &["8fbb26f208128ec1658c2627b9dbbc8b", "c033e3da9aa47ae3945dd672bfe42603"]),
    ("fingerprint vars", &["100d0b20538af2eabee672a46e2f81b4"]),
    ("checksum", &["a16f00982a67559f2ec72793ca057bca"]),
    ("empty", &["5ce52d6dafc4fe0d85743ed9db884e7c"]),
    ("hybrid empty", &["5ce52d6dafc4fe0d85743ed9db884e7c"]),
    ("frame platform override", &["a6c6dbdd29a2b1d002f091acb5aec2e9"]),
    ("py-br exception", &["004ba0714247e245532e860a49d62f4d"]),
    ("py-br chained", &["e453f4ef96ffe6da59ea48925d16802c"]),
    ("py-br message", &["48b22d0b5777f76220f49dfb536c312f"]),
    ("py-br fingerprint", &["bf53983f2c15e61be53b61cb48e489a6"]),
    ("py-br large", &["8e1d8c560cec82315a32d6a8dd84ec38"]),
    ("rust exception", &["5345abc36468b73cec7e04fb20690992", "66b90789b3dd768c31c7194c4f69e0a3"]),
    ("rust chained", &["3343076846d86ae2d175fa2b981c776d"]),
    ("rust fingerprint", &["55ad7a6f7f3a03b432aaa83f362540a5", "9878fda7785320f5e75d35ec100f5cf6"]),
    ("rust large", &["8e1d8c560cec82315a32d6a8dd84ec38"]),
];

fn old_hashes(event: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(event).unwrap();
    let config = Config {
        scheme: Scheme::V2026_11,
        ..Config::default()
    };
    hashes(&parse(&bytes).unwrap(), &config)
}

#[test]
fn old_scheme_hashes_are_frozen() {
    let events = events();
    assert_eq!(events.len(), FROZEN.len());
    for ((name, event), (frozen_name, frozen)) in events.iter().zip(FROZEN) {
        assert_eq!(name, frozen_name);
        assert_eq!(old_hashes(event), *frozen, "{name}");
    }
}

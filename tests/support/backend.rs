//! Both storage backends for tests: `TestDb` is a fresh database per test (a SQLite file in a
//! temporary directory, or a PostgreSQL database created on the server of `TEST_DATABASE_URL`
//! and dropped afterwards), and `both_backends!` runs one test body on each.
//!
//! Include it first, with `#[macro_use]`, so the macro is in scope in every later module:
//!
//! ```ignore
//! #[path = "../support/backend.rs"]
//! #[macro_use]
//! mod backend;
//! ```
//!
//! It must be a module of the crate root (`crate::backend`): the macro names it by that path.

#![allow(dead_code)]

use sqlx::Connection;
use stackhound::store::Store;
use std::time::Duration;

/// The variable that names the PostgreSQL server tests create their databases on: an URL a
/// role allowed to `CREATE DATABASE` connects with, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const PG_URL_VAR: &str = "TEST_DATABASE_URL";

/// How long connecting to the PostgreSQL server (and each create or drop) may take.
const PG_TIMEOUT: Duration = Duration::from_secs(20);

/// Prefix of every database the tests create; `sh_t_%` finds leftovers.
pub const DB_PREFIX: &str = "sh_t_";

/// At most this many PostgreSQL test databases exist at once in one test binary (cargo runs
/// the binaries one after another), whatever the number of test threads: each holds a server's
/// pool (up to 10 connections), and the server allows 100 connections in all.
const PG_AT_ONCE: usize = 4;
static PG_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PG_AT_ONCE);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The admin URL from `TEST_DATABASE_URL`; `None` when it is unset or empty (the PostgreSQL
/// variants are then skipped; a set but unreachable server fails them).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var(PG_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Whether the variant of `backend` runs; prints why not when it does not.
pub fn available(backend: Backend) -> bool {
    match backend {
        Backend::Sqlite => true,
        Backend::Postgres if postgres_admin_url().is_some() => true,
        Backend::Postgres => {
            println!("skipped: {PG_URL_VAR} is not set");
            false
        }
    }
}

/// A fresh, empty database (no schema: `Store::open` applies the migrations), removed when
/// dropped.
pub struct TestDb {
    /// What `Store::open` and `--database-url` take.
    pub url: String,
    pub backend: Backend,
    place: Place,
}

enum Place {
    /// The directory holding the file; deleted with it.
    Sqlite(tempfile::TempDir),
    /// The database `name`, dropped through a connection to `admin`; the slot is given back
    /// after the drop.
    Postgres {
        admin: String,
        name: String,
        _slot: tokio::sync::SemaphorePermit<'static>,
    },
}

impl TestDb {
    /// A new database on `backend`. Panics when it cannot be made: an unset or unreachable
    /// `TEST_DATABASE_URL` fails the test (the macro skips before calling this when unset).
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    backend,
                    place: Place::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()
                    .unwrap_or_else(|| panic!("{PG_URL_VAR} is not set: no PostgreSQL to test"));
                let slot = PG_SLOTS
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                let name = format!("{DB_PREFIX}{:016x}", rand::random::<u64>());
                let url = with_database(&admin, &name);
                let mut conn = pg_connect(&admin).await;
                run(&mut conn, &format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("CREATE DATABASE {name} on {}: {e}", redacted(&admin))
                    });
                let _ = conn.close().await;
                TestDb {
                    url,
                    backend,
                    place: Place::Postgres {
                        admin,
                        name,
                        _slot: slot,
                    },
                }
            }
        }
    }

    /// A SQLite database in `dir` (which the test prepared, e.g. a small file system).
    pub fn sqlite_in(dir: tempfile::TempDir) -> TestDb {
        TestDb {
            url: format!("sqlite://{}", dir.path().join("test.db").display()),
            backend: Backend::Sqlite,
            place: Place::Sqlite(dir),
        }
    }

    /// A `Store` over this database (migrations applied).
    pub async fn open(&self) -> Store {
        self.open_with(&stackhound::store::StoreOptions::default())
            .await
    }

    /// A `Store` over this database with `opts` (migrations applied).
    pub async fn open_with(&self, opts: &stackhound::store::StoreOptions) -> Store {
        Store::open_with(&self.url, opts).await.unwrap_or_else(|e| {
            panic!(
                "Store::open on {} ({}): {e}",
                self.backend,
                redacted(&self.url)
            )
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Place::Postgres { admin, name, .. } = &self.place else {
            return; // The TempDir removes the file.
        };
        // Drop may run inside a runtime (where blocking on another one is refused), so the
        // drop gets a thread and a runtime of its own, and this waits for it. FORCE ends the
        // connections a server or store still holds.
        let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let admin = admin.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn =
                    tokio::time::timeout(PG_TIMEOUT, sqlx::PgConnection::connect(&admin))
                        .await
                        .map_err(|_| "connect timed out".to_string())?
                        .map_err(|e| e.to_string())?;
                let result = run(&mut conn, &drop_sql).await;
                let _ = conn.close().await;
                result
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database {name} not dropped: {e}"),
            Err(_) => eprintln!("test database {name} not dropped: the drop thread panicked"),
        }
    }
}

/// Connects to the admin URL, or panics saying where it tried (without the password).
async fn pg_connect(admin: &str) -> sqlx::PgConnection {
    match tokio::time::timeout(PG_TIMEOUT, sqlx::PgConnection::connect(admin)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL at {PG_URL_VAR}={} is not reachable: {e}",
            redacted(admin)
        ),
        Err(_) => panic!(
            "PostgreSQL at {PG_URL_VAR}={} did not answer within {PG_TIMEOUT:?}",
            redacted(admin)
        ),
    }
}

/// One statement over the simple protocol (CREATE/DROP DATABASE refuse transaction blocks).
async fn run(conn: &mut sqlx::PgConnection, sql: &str) -> Result<(), String> {
    match tokio::time::timeout(PG_TIMEOUT, sqlx::raw_sql(sql).execute(conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{sql}: timed out")),
    }
}

/// `admin` with its database (the URL path) replaced by `name`; query parameters are kept.
fn with_database(admin: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(admin)
        .unwrap_or_else(|e| panic!("{PG_URL_VAR} is not an URL ({e}): {}", redacted(admin)));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

/// Runs one async test body on each backend, so no test is written twice. The body is an
/// ordinary `async fn NAME(backend: Backend)` (formatted and linted like any code); the macro,
/// written just above it, adds the module `NAME` with the tests `sqlite` and `postgres`:
///
/// ```ignore
/// both_backends!(replay_python_captures);
/// async fn replay_python_captures(backend: Backend) {
///     let server = spawn(backend).await;
///     ...
/// }
/// ```
///
/// runs as `captures::replay_python_captures::sqlite` and `...::postgres`, each under
/// `#[tokio::test]`; `both_backends!(multi_thread: NAME)` uses
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` instead. The PostgreSQL
/// variant prints `skipped: TEST_DATABASE_URL is not set` and passes when the variable is unset.
macro_rules! both_backends {
    ($name:ident) => {
        both_backends!(@tests $name, []);
    };
    (multi_thread: $name:ident) => {
        both_backends!(@tests $name, [(flavor = "multi_thread", worker_threads = 2)]);
    };
    (@tests $name:ident, [$($tokio:tt)*]) => {
        mod $name {
            #[tokio::test $($tokio)*]
            async fn sqlite() {
                super::$name(crate::backend::Backend::Sqlite).await
            }

            #[tokio::test $($tokio)*]
            async fn postgres() {
                if crate::backend::available(crate::backend::Backend::Postgres) {
                    super::$name(crate::backend::Backend::Postgres).await
                }
            }
        }
    };
}

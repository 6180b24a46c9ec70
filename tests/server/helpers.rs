//! `spawn(backend)`: a server on 127.0.0.1:0 over a fresh database of `backend`, with a project
//! and a token.

use crate::backend::{Backend, TestDb};
use stackhound::app::{self, Settings};
use stackhound::clock::Clock;
use stackhound::config::Limits;
use stackhound::store::Store;
use tokio::sync::oneshot;

/// The DSN key of the captured SDK traffic, so the captures replay with their own key.
pub const KEY: &str = "public123";

pub struct TestServer {
    pub base: String,
    pub project_id: i64,
    pub dsn: String,
    pub token: String,
    pub store: Store,
    pub http: reqwest::Client,
    pub clock: Clock,
    /// The running server's shared state (pipeline, caches, heartbeats): tests on a manual
    /// clock build workers from it and run their rounds themselves.
    pub state: app::AppState,
    tune: Tune,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The database; declared last, so it is dropped after everything that uses it.
    db: Option<TestDb>,
}

/// Changes a test makes to the server's settings; kept so that `restart` applies them again.
pub type Tune = std::sync::Arc<dyn Fn(&mut Settings) + Send + Sync>;

pub async fn spawn(backend: Backend) -> TestServer {
    spawn_tuned(backend, |_| {}).await
}

pub async fn spawn_with(backend: Backend, limits: Limits) -> TestServer {
    spawn_tuned(backend, move |s| s.limits = limits.clone()).await
}

/// A server whose settings `tune` adjusts (limits, timeouts, quotas...).
pub async fn spawn_tuned(
    backend: Backend,
    tune: impl Fn(&mut Settings) + Send + Sync + 'static,
) -> TestServer {
    spawn_full(backend, Clock::System, std::sync::Arc::new(tune)).await
}

/// A server on a manual clock (starting at the current time), periodic workers off: tests move
/// the clock and run the due steps themselves.
pub async fn spawn_manual(backend: Backend) -> TestServer {
    let clock = Clock::manual(chrono::Utc::now());
    spawn_full(
        backend,
        clock,
        std::sync::Arc::new(|s| s.background = false),
    )
    .await
}

async fn spawn_full(backend: Backend, clock: Clock, tune: Tune) -> TestServer {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    spawn_store(db, store, clock, tune).await
}

/// A server over `store` (opened by the test on `db`, e.g. with its own options), with the
/// default project and a token.
pub async fn spawn_on(
    db: TestDb,
    store: Store,
    tune: impl Fn(&mut Settings) + Send + Sync + 'static,
) -> TestServer {
    spawn_store(db, store, Clock::System, std::sync::Arc::new(tune)).await
}

async fn spawn_store(db: TestDb, store: Store, clock: Clock, tune: Tune) -> TestServer {
    let project = store
        .create_project("default", "Default", KEY, 0)
        .await
        .unwrap();
    let token = stackhound::cli::create_token(&store, &clock, "test")
        .await
        .unwrap();
    serve_on(db, store, project.id, token, clock, tune).await
}

/// A server over a database that already has the project and the token.
pub(crate) async fn serve_on(
    db: TestDb,
    store: Store,
    project_id: i64,
    token: String,
    clock: Clock,
    tune: Tune,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut settings = Settings {
        clock: clock.clone(),
        ..Settings::new(base.clone())
    };
    tune(&mut settings);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = app::start(store.clone(), settings);
    let state = server.state.clone();
    let handle = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    TestServer {
        dsn: format!("http://{KEY}@{addr}/{project_id}"),
        project_id,
        base,
        token,
        store,
        http: reqwest::Client::new(),
        clock,
        state,
        tune,
        stop: Some(stop),
        handle: Some(handle),
        db: Some(db),
    }
}

impl TestServer {
    /// The database's URL, for the real binary's commands (`DATABASE_URL`).
    pub fn database_url(&self) -> String {
        self.db.as_ref().map(|d| d.url.clone()).unwrap_or_default()
    }

    pub fn envelope_url(&self) -> String {
        format!("{}/api/{}/envelope/", self.base, self.project_id)
    }

    pub fn auth_header(&self) -> String {
        format!("Sentry sentry_key={KEY}, sentry_version=7, sentry_client=stackhound-tests/1.0")
    }

    /// GET an `/api/0/` path with the token; returns status, headers and JSON body.
    pub async fn api(&self, path: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    }

    /// PUT a JSON body to an `/api/0/` path with the token; returns status and JSON body.
    pub async fn put_api(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Every issue of the project (all statuses), following the Link header.
    pub async fn all_issues(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, headers, body) = self
                .api(&format!(
                    "/api/0/projects/stackhound/default/issues/?query=&cursor={cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            out.extend(body.as_array().unwrap().iter().cloned());
            match next_cursor(&headers) {
                Some(next) => cursor = next,
                None => return out,
            }
        }
    }

    /// Adds an alert channel to the project through the API.
    pub async fn add_channel(&self, body: serde_json::Value) {
        let resp = self
            .http
            .post(format!(
                "{}/api/0/projects/stackhound/default/alert-channels/",
                self.base
            ))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }

    /// Posts a body to the envelope endpoint with our auth header plus `headers`.
    pub async fn post_envelope(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(self.envelope_url())
            .header("x-sentry-auth", self.auth_header())
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Stops the server gracefully and waits for it; then the database is dropped with `self`.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// Tells the server to stop and waits for it (a minute at most: a stop that hangs fails the
    /// test); the server closes its store on its way out.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut h) = self.handle.take() {
            match tokio::time::timeout(std::time::Duration::from_secs(60), &mut h).await {
                Ok(served) => served.unwrap().unwrap(),
                Err(_) => {
                    h.abort();
                    panic!("the server did not stop within 60 s");
                }
            }
        }
    }
}

impl TestServer {
    /// Stops the server gracefully (it closes its store) and starts a new one on the same
    /// database, clock, project and token: the new server knows only what the database holds,
    /// as a restarted process (or another process) would.
    pub async fn restart(mut self) -> TestServer {
        self.shut_down().await;
        let db = self.db.take().expect("the database outlives its servers");
        let store = db.open().await;
        serve_on(
            db,
            store,
            self.project_id,
            self.token.clone(),
            self.clock.clone(),
            self.tune.clone(),
        )
        .await
    }
}

impl Drop for TestServer {
    /// A server never stopped (a test that failed, or did not call `stop`) is told to stop and
    /// its task aborted; dropping the database (`WITH (FORCE)` on PostgreSQL) then ends any
    /// connection it still holds.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// The cursor of the `rel="next"` link while it has `results="true"` (how sentry-cli pages).
pub fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    let next = link.split(", <").find(|l| l.contains("rel=\"next\""))?;
    if !next.contains("results=\"true\"") {
        return None;
    }
    let cursor = next.split("cursor=\"").nth(1)?.trim_end_matches('"');
    Some(cursor.to_string())
}

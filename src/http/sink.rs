//! `stackhound bench-sink`: a bare HTTP endpoint that discards envelopes, the ingest ceiling.
//!
//! It uses the same HTTP stack as the real server (axum on hyper through `http::serve`,
//! HTTP/1.1 keep-alive) but does no decompression, parsing or storage, so `stackhound stress`
//! against it measures what the machine can do for HTTP alone with the load generator on the
//! same cores.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

/// What Sentry answers to a stored event; a fixed id since nothing is stored.
const ANSWER: &str = r#"{"id":"00000000000000000000000000000000"}"#;

/// Reads the whole body (like the real server must before answering), then answers 200.
async fn accept(body: Bytes) -> impl IntoResponse {
    // Touch the length so the body read cannot be considered dead by a reader of this code:
    // receiving the bytes is the point of the measurement.
    std::hint::black_box(body.len());
    ([(CONTENT_TYPE, "application/json")], ANSWER)
}

/// The sink's routes: the envelope and legacy store endpoints.
pub fn router() -> Router {
    Router::new()
        .route("/api/{project_id}/envelope/", post(accept))
        .route("/api/{project_id}/store/", post(accept))
}

/// Serves the sink on `listener` until the process is killed, on the server's own accept loop
/// (`http::serve`), so the ceiling is measured on the same stack.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    super::serve::serve(
        listener,
        router(),
        super::serve::ConnLimits::default(),
        std::future::pending(),
    )
    .await
}

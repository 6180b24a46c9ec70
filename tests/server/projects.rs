//! Projects, DSN keys and deletion through the API: create, list, rename, delete (409, 400,
//! 404); keys made, renamed, turned off and on, revoked, with ingestion following within a
//! second on a manual clock; `DELETE` of an issue (202, gone at once, its rows purged in
//! slices, a restart in between) and of a project.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_manual, TestServer, KEY};
use serde_json::{json, Value};
use sqlx::Connection;

const PROJECTS: &str = "/api/0/organizations/stackhound/projects/";

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(&server.token);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, Some(&body.to_string())).await
}

async fn delete(server: &TestServer, path: &str) -> u16 {
    send(server, reqwest::Method::DELETE, path, None).await.0
}

/// An error event of `fingerprint` sent with the DSN key `key` to project `pid`: the status.
async fn ingest(server: &TestServer, key: &str, pid: i64, n: u32, fingerprint: &str) -> u16 {
    let event_id = format!("{:032x}", ((pid as u128) << 64) | u128::from(n));
    let event = json!({"message": format!("boom {fingerprint}"), "level": "error",
        "fingerprint": [fingerprint], "tags": {"n": n.to_string()}});
    let payload = event.to_string();
    let body = format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    );
    server
        .http
        .post(format!("{}/api/{pid}/envelope/", server.base))
        .header(
            "x-sentry-auth",
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=tests/1.0"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `SELECT count(*) ...` on the server's database, straight through sqlx.
async fn count(server: &TestServer, sql: &str, id: i64) -> i64 {
    let url = server.database_url();
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// Runs purge steps of `rows` until nothing is left; returns how many steps did something.
async fn purge_all(server: &TestServer, rows: usize) -> usize {
    let mut steps = 0;
    while server.store.purge_step(rows).await.unwrap() > 0 {
        steps += 1;
        assert!(steps < 10_000, "the purge does not finish");
    }
    assert_eq!(server.store.purges_pending().await.unwrap(), 0);
    steps
}

both_backends!(projects_are_created_listed_renamed_and_deleted);
async fn projects_are_created_listed_renamed_and_deleted(backend: Backend) {
    let server = spawn(backend).await;
    let (status, list) = send(&server, reqwest::Method::GET, PROJECTS, None).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["slug"], "default");
    assert_eq!(list[0]["id"], server.project_id.to_string());
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["platform"], Value::Null);
    assert_eq!(list[0]["organization"]["slug"], "stackhound");
    assert!(list[0]["dateCreated"].is_string());

    // Created from a name: the slug is made from it.
    let (status, p) = post(&server, PROJECTS, &json!({"name": "Checkout Service!"})).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["slug"], "checkout-service");
    assert_eq!(p["name"], "Checkout Service!");
    assert_eq!(p["alertOnNewIssue"], true);
    let (status, dup) = post(&server, PROJECTS, &json!({"name": "Checkout service"})).await;
    assert_eq!(status, 409, "{dup}");
    assert!(dup["detail"].as_str().unwrap().contains("checkout-service"));
    let (status, _) = send(
        &server,
        reqwest::Method::POST,
        PROJECTS,
        Some("{\"name\": "),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, PROJECTS, &json!({"name": "x", "slug": "Bad Slug"})).await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, PROJECTS, &json!({"slug": "no-name"})).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &server,
        "/api/0/organizations/other/projects/",
        &json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, p) = post(&server, PROJECTS, &json!({"name": "Web", "slug": "web"})).await;
    assert_eq!(status, 201, "{p}");
    // A new project has one active key, which ingestion takes.
    let web_id: i64 = p["id"].as_str().unwrap().parse().unwrap();
    let (_, _, keys) = server.api("/api/0/projects/stackhound/web/keys/").await;
    let web_key = keys[0]["public"].as_str().unwrap().to_owned();
    assert_eq!(ingest(&server, &web_key, web_id, 1, "w").await, 200);

    // Renamed: name and slug; other settings keep working in the same PUT.
    let (status, p) = server
        .put_api(
            "/api/0/projects/stackhound/checkout-service/",
            &json!({"name": "Checkout", "slug": "checkout", "alertOnRegression": false}),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["slug"].as_str(), p["name"].as_str()),
        (Some("checkout"), Some("Checkout"))
    );
    assert_eq!(p["alertOnRegression"], false);
    let (status, _, _) = server
        .api("/api/0/projects/stackhound/checkout-service/")
        .await;
    assert_eq!(status, 404);
    let (status, p) = send(
        &server,
        reqwest::Method::GET,
        "/api/0/projects/stackhound/checkout/",
        None,
    )
    .await;
    assert_eq!((status, p["name"].as_str()), (200, Some("Checkout")));
    let (status, _) = server
        .put_api(
            "/api/0/projects/stackhound/checkout/",
            &json!({"slug": "default"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .put_api(
            "/api/0/projects/stackhound/checkout/",
            &json!({"slug": "UPPER"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .put_api("/api/0/projects/stackhound/nope/", &json!({"name": "x"}))
        .await;
    assert_eq!(status, 404);

    // Deleted: 204, gone from reads and lists, its key refused, its slug free again.
    assert_eq!(
        delete(&server, "/api/0/projects/stackhound/nope/").await,
        404
    );
    assert_eq!(
        delete(&server, "/api/0/projects/stackhound/web/").await,
        204
    );
    assert_eq!(
        delete(&server, "/api/0/projects/stackhound/web/").await,
        404
    );
    let (status, _, _) = server.api("/api/0/projects/stackhound/web/").await;
    assert_eq!(status, 404);
    let (_, list) = send(&server, reqwest::Method::GET, PROJECTS, None).await;
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["default", "checkout"]);
    assert_eq!(ingest(&server, &web_key, web_id, 2, "w").await, 403);
    let (status, p) = post(&server, PROJECTS, &json!({"name": "Web"})).await;
    assert_eq!((status, p["slug"].as_str()), (201, Some("web")), "{p}");
    assert_ne!(p["id"], web_id.to_string());
    server.stop().await;
}

both_backends!(keys_are_refused_within_a_second_of_being_turned_off);
async fn keys_are_refused_within_a_second_of_being_turned_off(backend: Backend) {
    let server = spawn_manual(backend).await;
    let pid = server.project_id;
    let keys_path = "/api/0/projects/stackhound/default/keys/";
    let (status, _, keys) = server.api(keys_path).await;
    assert_eq!(status, 200, "{keys}");
    let keys = keys.as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], KEY);
    assert_eq!(keys[0]["public"], KEY);
    assert_eq!(keys[0]["name"], "Default");
    assert_eq!(keys[0]["isActive"], true);
    assert_eq!(keys[0]["projectId"], pid);
    assert_eq!(keys[0]["dsn"]["public"], server.dsn);

    let (status, k) = post(&server, keys_path, &json!({"name": "Second"})).await;
    assert_eq!(status, 201, "{k}");
    let key = k["public"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32);
    assert_eq!(
        (k["name"].as_str(), k["isActive"].as_bool()),
        (Some("Second"), Some(true))
    );
    let path = format!("{keys_path}{key}/");
    assert_eq!(ingest(&server, &key, pid, 1, "a").await, 200);

    // Renamed and turned off through the API: refused at once by this process.
    let (status, k) = server
        .put_api(&path, &json!({"name": "Paused", "isActive": false}))
        .await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(
        (k["name"].as_str(), k["isActive"].as_bool()),
        (Some("Paused"), Some(false))
    );
    assert_eq!(ingest(&server, &key, pid, 2, "a").await, 403);
    let (_, _, k) = server.api(&path).await;
    assert_eq!(k["isActive"], false);
    // And on again.
    let (status, _) = server.put_api(&path, &json!({"isActive": true})).await;
    assert_eq!(status, 200);
    assert_eq!(ingest(&server, &key, pid, 3, "a").await, 200);

    // Turned off by another process (here: straight in the database, which this process's
    // cache is not told about): still accepted within the second, refused once it passed.
    server
        .store
        .update_key(pid, &key, None, Some(false))
        .await
        .unwrap();
    assert_eq!(ingest(&server, &key, pid, 4, "a").await, 200);
    server.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ingest(&server, &key, pid, 5, "a").await, 403);
    server.put_api(&path, &json!({"isActive": true})).await;
    assert_eq!(ingest(&server, &key, pid, 6, "a").await, 200);

    // Revoked by another process: the same.
    assert!(server.store.delete_key(pid, &key).await.unwrap());
    assert_eq!(ingest(&server, &key, pid, 7, "a").await, 200);
    server.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ingest(&server, &key, pid, 8, "a").await, 403);

    // Revoked through the API: 204, refused at once, gone from reads.
    let (_, k) = post(&server, keys_path, &json!({})).await;
    let key = k["public"].as_str().unwrap().to_owned();
    assert_eq!(ingest(&server, &key, pid, 9, "b").await, 200);
    let path = format!("{keys_path}{key}/");
    assert_eq!(delete(&server, &path).await, 204);
    assert_eq!(ingest(&server, &key, pid, 10, "b").await, 403);
    assert_eq!(server.api(&path).await.0, 404);
    assert_eq!(delete(&server, &path).await, 404);
    let (_, _, keys) = server.api(keys_path).await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    // The first key still works; the project's issue counted what was accepted.
    assert_eq!(ingest(&server, KEY, pid, 11, "a").await, 200);
    let issues = server.all_issues().await;
    let a = issues.iter().find(|i| i["title"] == "boom a").unwrap();
    assert_eq!(a["count"], "6");

    // A key of a deleted project: cached as good here, refused within a second.
    let (_, p) = post(&server, PROJECTS, &json!({"name": "Other"})).await;
    let other: i64 = p["id"].as_str().unwrap().parse().unwrap();
    let (_, _, keys) = server.api("/api/0/projects/stackhound/other/keys/").await;
    let other_key = keys[0]["public"].as_str().unwrap().to_owned();
    assert_eq!(ingest(&server, &other_key, other, 1, "o").await, 200);
    assert!(server.store.delete_project(other, 0).await.unwrap());
    server.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ingest(&server, &other_key, other, 2, "o").await, 403);
    server.stop().await;
}

both_backends!(a_deleted_issue_is_gone_at_once_and_purged_in_slices);
async fn a_deleted_issue_is_gone_at_once_and_purged_in_slices(backend: Backend) {
    let server = spawn_manual(backend).await;
    let pid = server.project_id;
    for n in 0..5 {
        assert_eq!(ingest(&server, KEY, pid, n, "doomed").await, 200);
    }
    assert_eq!(ingest(&server, KEY, pid, 100, "kept").await, 200);
    let issues = server.all_issues().await;
    let doomed = issues
        .iter()
        .find(|i| i["title"] == "boom doomed")
        .unwrap()
        .clone();
    let kept = issues
        .iter()
        .find(|i| i["title"] == "boom kept")
        .unwrap()
        .clone();
    let id: i64 = doomed["id"].as_str().unwrap().parse().unwrap();
    let kept_id: i64 = kept["id"].as_str().unwrap().parse().unwrap();
    let short = doomed["shortId"].as_str().unwrap().to_owned();

    let path = format!("/api/0/issues/{id}/");
    assert_eq!(delete(&server, "/api/0/issues/999999/").await, 404);
    assert_eq!(delete(&server, &path).await, 202);
    // Gone from every read at once, by id and by short id, and from the list.
    assert_eq!(server.api(&path).await.0, 404);
    assert_eq!(server.api(&format!("/api/0/issues/{short}/")).await.0, 404);
    assert_eq!(
        server.api(&format!("/api/0/issues/{id}/events/")).await.0,
        404
    );
    assert_eq!(delete(&server, &path).await, 404);
    let listed: Vec<Value> = server.all_issues().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], kept["id"]);
    // The same fingerprint again, through the writer that cached its hash link: a new issue,
    // counting from one.
    assert_eq!(ingest(&server, KEY, pid, 50, "doomed").await, 200);
    let issues = server.all_issues().await;
    let again = issues.iter().find(|i| i["title"] == "boom doomed").unwrap();
    assert_ne!(again["id"], doomed["id"]);
    assert_eq!(again["count"], "1");

    // Its events are still there until the purge runs, which survives a restart.
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE issue_id = $1",
            id
        )
        .await,
        5
    );
    for sql in [
        "SELECT count(*) FROM issue_tags WHERE issue_id = $1",
        "SELECT count(*) FROM issue_episodes WHERE issue_id = $1",
    ] {
        assert!(count(&server, sql, id).await > 0, "{sql}");
    }
    let server = server.restart().await;
    assert_eq!(server.store.purges_pending().await.unwrap(), 1);
    // Slices of 2 rows: several steps.
    let steps = purge_all(&server, 2).await;
    assert!(steps >= 4, "{steps} steps");
    for sql in [
        "SELECT count(*) FROM events WHERE issue_id = $1",
        "SELECT count(*) FROM issues WHERE id = $1",
        "SELECT count(*) FROM issue_tags WHERE issue_id = $1",
        "SELECT count(*) FROM issue_stats WHERE issue_id = $1",
        "SELECT count(*) FROM issue_activity WHERE issue_id = $1",
        "SELECT count(*) FROM issue_episodes WHERE issue_id = $1",
        "SELECT count(*) FROM grouping_hashes WHERE issue_id = $1",
    ] {
        assert_eq!(count(&server, sql, id).await, 0, "{sql}");
    }
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE issue_id = $1",
            kept_id
        )
        .await,
        1
    );

    // The organization's route, by short id.
    let kept_short = kept["shortId"].as_str().unwrap();
    assert_eq!(
        delete(
            &server,
            &format!("/api/0/organizations/stackhound/issues/{kept_short}/")
        )
        .await,
        202
    );
    assert_eq!(
        delete(
            &server,
            &format!(
                "/api/0/organizations/other/issues/{}/",
                again["id"].as_str().unwrap()
            )
        )
        .await,
        404
    );
    assert_eq!(server.all_issues().await.len(), 1);
    purge_all(&server, 500).await;
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE issue_id = $1",
            kept_id
        )
        .await,
        0
    );
    server.stop().await;
}

both_backends!(a_deleted_project_is_purged);
async fn a_deleted_project_is_purged(backend: Backend) {
    let server = spawn_manual(backend).await;
    let (_, p) = post(&server, PROJECTS, &json!({"name": "Doomed"})).await;
    let pid: i64 = p["id"].as_str().unwrap().parse().unwrap();
    let (_, _, keys) = server.api("/api/0/projects/stackhound/doomed/keys/").await;
    let key = keys[0]["public"].as_str().unwrap().to_owned();
    for n in 0..7 {
        assert_eq!(
            ingest(&server, &key, pid, n, &format!("f{}", n % 3)).await,
            200
        );
    }
    assert_eq!(ingest(&server, KEY, server.project_id, 1, "f0").await, 200);
    let (status, _, issues) = server
        .api("/api/0/projects/stackhound/doomed/issues/")
        .await;
    assert_eq!(status, 200);
    let some_issue = issues[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        delete(&server, "/api/0/projects/stackhound/doomed/").await,
        204
    );
    assert_eq!(ingest(&server, &key, pid, 100, "f0").await, 403);
    assert_eq!(
        server
            .api("/api/0/projects/stackhound/doomed/issues/")
            .await
            .0,
        404
    );
    purge_all(&server, 3).await;
    assert_eq!(
        server.api(&format!("/api/0/issues/{some_issue}/")).await.0,
        404
    );
    for sql in [
        "SELECT count(*) FROM events WHERE project_id = $1",
        "SELECT count(*) FROM issues WHERE project_id = $1",
        "SELECT count(*) FROM grouping_hashes WHERE project_id = $1",
        "SELECT count(*) FROM project_keys WHERE project_id = $1",
        "SELECT count(*) FROM projects WHERE id = $1 AND deleted_at IS NULL",
    ] {
        assert_eq!(count(&server, sql, pid).await, 0, "{sql}");
    }
    // The other project is untouched.
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE project_id = $1",
            server.project_id
        )
        .await,
        1
    );
    assert_eq!(server.all_issues().await.len(), 1);
    server.stop().await;
}

both_backends!(a_key_turned_off_through_one_server_is_refused_by_another_within_a_second);
async fn a_key_turned_off_through_one_server_is_refused_by_another_within_a_second(
    backend: Backend,
) {
    let a = spawn_manual(backend).await;
    let pid = a.project_id;
    // A second server on the same database and clock: its own store, pools and caches, as
    // another process has.
    let store = stackhound::store::Store::open(&a.database_url())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = stackhound::app::Settings {
        clock: a.clock.clone(),
        background: false,
        ..stackhound::app::Settings::new(base.clone())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let b = tokio::spawn(
        stackhound::app::start(store, settings).serve(listener, async {
            let _ = stopped.await;
        }),
    );
    let via_b = |key: String, n: u32| {
        let http = a.http.clone();
        let url = format!("{base}/api/{pid}/store/");
        async move {
            let event = json!({"event_id": format!("{:032x}", 1_000 + n), "message": "via b"});
            http.post(url)
                .header(
                    "x-sentry-auth",
                    format!("Sentry sentry_key={key}, sentry_version=7"),
                )
                .json(&event)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let keys_path = "/api/0/projects/stackhound/default/keys/";
    let (_, k) = post(&a, keys_path, &json!({"name": "shared"})).await;
    let key = k["public"].as_str().unwrap().to_owned();
    let path = format!("{keys_path}{key}/");
    assert_eq!(via_b(key.clone(), 1).await, 200);
    // Turned off through A: B still holds its answer for the rest of the second, then not.
    assert_eq!(a.put_api(&path, &json!({"isActive": false})).await.0, 200);
    assert_eq!(via_b(key.clone(), 2).await, 200);
    a.clock.advance(chrono::Duration::milliseconds(999));
    assert_eq!(via_b(key.clone(), 3).await, 200);
    a.clock.advance(chrono::Duration::milliseconds(1));
    assert_eq!(via_b(key.clone(), 4).await, 403);
    // On again through A: B's refusal is remembered for the rest of its second, then not.
    assert_eq!(a.put_api(&path, &json!({"isActive": true})).await.0, 200);
    a.clock.advance(chrono::Duration::milliseconds(999));
    assert_eq!(via_b(key.clone(), 5).await, 403);
    a.clock.advance(chrono::Duration::milliseconds(1));
    assert_eq!(via_b(key.clone(), 7).await, 200);
    // Revoked through A: the same second.
    assert_eq!(delete(&a, &path).await, 204);
    a.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(via_b(key.clone(), 6).await, 403);

    let _ = stop.send(());
    b.await.unwrap().unwrap();
    a.stop().await;
}

//! `GET /recipients/{address}` of a real `rebound serve` over a real SQLite file pages the
//! recipient's events like `GET /events` (`limit`, `after`, `next`) instead of returning
//! the whole history at once.

#[path = "support/serve.rs"]
mod serve;

use std::path::Path;

use rebound::store::Store;
use serve::Server;

const CONFIG: &str = "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n";

/// Recipient `Long@example.org` with `n` soft bounces and `other@example.org` with one,
/// interleaved, written straight into the migrated schema.
async fn fill(dir: &Path, n: u32) {
    let url = format!("sqlite://{}", dir.join("rebound.db").display());
    Store::open(&url).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO recipients (address, address_key, state, created_at, updated_at) VALUES \
         ('Long@example.org', 'long@example.org', 'active', 0, 0), \
         ('other@example.org', 'other@example.org', 'active', 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
         INSERT INTO events (at, source, recipient, recipient_id, kind, decided_by) \
         SELECT n.i, 'smtp', r.address, r.id, 'bounce', 'builtin' FROM n CROSS JOIN recipients r \
         WHERE r.address_key = 'long@example.org' OR n.i = 7 ORDER BY n.i, r.id",
    )
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[test]
fn recipient_history_comes_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(dir.path(), 250));
    let server = Server::start(dir.path(), CONFIG, &[]);

    // The default page (100), then the rest by the cursor; the address in any case.
    let first = server.request("GET", "/recipients/LONG@example.org", None);
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    assert_eq!(first["recipient"]["address"], "Long@example.org");
    assert_eq!(first["events"].as_array().unwrap().len(), 100);
    assert!(first["next"].is_string(), "{}", first["next"]);

    let mut ids = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .request(
                "GET",
                &format!("/recipients/long@example.org?limit=60&after={after}"),
                None,
            )
            .json();
        pages += 1;
        assert_eq!(page["recipient"]["address"], "Long@example.org");
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["recipient"], "Long@example.org", "only this recipient's");
            ids.push(e["id"].as_i64().unwrap());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 250, "every event once");
    assert_eq!(pages, 5);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );

    // A short history is one page whose `next` is null.
    let other = server
        .request("GET", "/recipients/other@example.org", None)
        .json();
    assert_eq!(other["events"].as_array().unwrap().len(), 1);
    assert_eq!(other["next"], serde_json::Value::Null);

    for bad in [
        "/recipients/long@example.org?limit=0",
        "/recipients/long@example.org?limit=1001",
        "/recipients/long@example.org?after=r1",
    ] {
        let r = server.request("GET", bad, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{bad}");
    }
    assert_eq!(
        server
            .request("GET", "/recipients/nobody@example.org", None)
            .status,
        404
    );
}

//! Keyset pages of recipients and events: every filter's statement is served by an index
//! (`EXPLAIN QUERY PLAN` on the migrated schema), `GET /recipients` and `GET /events` of a
//! real `rebound serve` page with `limit`/`after`/`next`, and `rebound recipients` /
//! `rebound events` page through a table larger than one page. Real SQLite files.

#[path = "support/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;

use rebound::store::Store;
use rebound::store::sql::{self, EventFilters};
use serve::Server;
use sqlx::Row;

const CONFIG: &str = "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n";

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("rebound.db").display())
}

/// `n` recipients `r000000@example.org`… (every third bounced) and two events each
/// (a bounce and a complaint), written straight into the migrated schema.
async fn fill(dir: &Path, n: u32) {
    let store = Store::open(&url(dir)).await.unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&url(dir)).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
         INSERT INTO recipients (address, address_key, state, created_at, updated_at) \
         SELECT printf('R%06d@example.org', i), printf('r%06d@example.org', i), \
         CASE WHEN i % 3 = 0 THEN 'bounced' ELSE 'active' END, 0, 0 FROM n",
    )
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (at, source, recipient, recipient_id, kind, decided_by) \
         SELECT k.at, 'smtp', r.address, r.id, k.kind, 'builtin' FROM recipients r \
         CROSS JOIN (SELECT 1 AS at, 'bounce' AS kind UNION ALL SELECT 2, 'complaint') k \
         ORDER BY k.at, r.id",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

async fn plan(pool: &sqlx::SqlitePool, sql: &str) -> String {
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>(3))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn listing_filters_are_served_by_an_index() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    let pool = sqlx::SqlitePool::connect(&url(dir.path())).await.unwrap();

    let by_recipient = plan(
        &pool,
        &(sql::SQLITE.select_events)(EventFilters {
            recipient: true,
            ..EventFilters::default()
        }),
    )
    .await;
    assert!(
        by_recipient.contains("SEARCH e USING INDEX events_recipient_id (recipient_id=? AND id>?)"),
        "{by_recipient}"
    );
    assert!(
        by_recipient.contains("USING COVERING INDEX sqlite_autoindex_recipients")
            || by_recipient.contains("USING INDEX sqlite_autoindex_recipients"),
        "the recipient is found by its key: {by_recipient}"
    );
    // Each combination reads its rows in id order: no sort, no scan of the events table
    // (but the unfiltered listing, which walks the table by id from the cursor on).
    for filters in EventFilters::all() {
        let sql = (sql::SQLITE.select_events)(filters);
        let p = plan(&pool, &sql).await;
        assert!(
            !p.contains("TEMP B-TREE") || filters.mailbox,
            "{filters:?}: {p}"
        );
        assert!(
            !p.contains("SCAN e") || !(filters.recipient || filters.kind || filters.campaign),
            "{filters:?}: {p}"
        );
        assert!(!sql.contains("IS NULL OR"), "{sql}");
    }
    let in_state = plan(&pool, sql::SQLITE.SELECT_RECIPIENTS_IN_STATE).await;
    assert!(
        in_state.contains("USING INDEX recipients_state_key (state=? AND address_key>?)"),
        "{in_state}"
    );
    assert!(!in_state.contains("TEMP B-TREE"), "{in_state}");
    let all = plan(&pool, sql::SQLITE.SELECT_RECIPIENTS).await;
    assert!(
        all.contains("(address_key>?)") && !all.contains("TEMP B-TREE"),
        "{all}"
    );
    pool.close().await;
}

#[tokio::test]
async fn store_pages_follow_the_key_order_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 25).await;
    let store = Store::open(&url(dir.path())).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .recipients_page(
                Some(rebound::store::RecipientState::Bounced),
                after.as_deref(),
                4,
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(page.items.into_iter().map(|r| r.address));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("R{i:06}@example.org"))
        .collect();
    assert_eq!(seen, expected);
    // A page that ends exactly at the last row says so: no empty page after it.
    let page = store.recipients_page(None, None, 25).await.unwrap();
    assert_eq!((page.items.len(), page.next), (25, None));
    assert_eq!(store.recipients(None).await.unwrap().len(), 25);

    let filter = rebound::store::EventFilter {
        recipient: Some("r000007@EXAMPLE.org".into()),
        ..Default::default()
    };
    let first = store.events_page(&filter, 1).await.unwrap();
    assert_eq!(first.items[0].kind.as_str(), "bounce");
    let second = store
        .events_page(
            &rebound::store::EventFilter {
                after: first.next,
                ..filter.clone()
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(second.items[0].kind.as_str(), "complaint");
    assert_eq!(second.next, None);
    store.close().await;
}

#[test]
fn serve_pages_recipients_and_events() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(dir.path(), 250));
    let server = Server::start(dir.path(), CONFIG, &[]);

    // The default page, then the rest by the cursor.
    let first = server.request("GET", "/recipients", None).json();
    assert_eq!(first["recipients"].as_array().unwrap().len(), 100);
    assert_eq!(first["recipients"][0]["address"], "R000000@example.org");
    assert_eq!(first["next"], "r000099@example.org");
    let mut addresses = Vec::new();
    let mut after = String::new();
    loop {
        let page = server
            .request(
                "GET",
                &format!("/recipients?state=active&limit=70&after={after}"),
                None,
            )
            .json();
        for r in page["recipients"].as_array().unwrap() {
            assert_eq!(r["state"], "active");
            addresses.push(r["address"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(addresses.len(), (0..250).filter(|i| i % 3 != 0).count());
    assert!(addresses.windows(2).all(|w| w[0] < w[1]));

    let events = server
        .request("GET", "/events?recipient=r000042@example.org", None)
        .json();
    let kinds: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["bounce", "complaint"]);
    assert_eq!(events["next"], serde_json::Value::Null);
    let mut n = 0;
    let mut after = String::new();
    loop {
        let page = server
            .request(
                "GET",
                &format!("/events?kind=complaint&limit=1000&after={after}"),
                None,
            )
            .json();
        n += page["events"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(n, 250);

    for bad in [
        "/recipients?limit=0",
        "/recipients?limit=1001",
        "/recipients?state=gone",
        "/events?limit=5000",
        "/events?after=r1",
        "/events?kind=nope",
    ] {
        let r = server.request("GET", bad, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn cli_lists_page_through_more_than_a_page() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2500).await;
    std::fs::write(dir.path().join("rebound.toml"), CONFIG).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
            .current_dir(dir.path())
            .args(["--config", "rebound.toml"])
            .args(args)
            .env("REBOUND_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let all: serde_json::Value =
        serde_json::from_str(&run(&["recipients", "--format", "json"])).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2500);
    assert_eq!(all[2499]["address"], "R002499@example.org");
    let table = run(&["recipients", "--state", "bounced"]);
    assert_eq!(
        table.lines().count(),
        1 + 834,
        "a header and every bounced one"
    );

    let events: serde_json::Value = serde_json::from_str(&run(&[
        "events", "--kind", "bounce", "--limit", "1500", "--format", "json",
    ]))
    .unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1500);
    let events: serde_json::Value =
        serde_json::from_str(&run(&["events", "--format", "json"])).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 5000);
    let one = run(&["events", "--recipient", "R001234@example.org"]);
    assert_eq!(one.lines().count(), 3, "{one}");
    let none: serde_json::Value = serde_json::from_str(&run(&[
        "events",
        "--recipient",
        "nobody@example.org",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(none, serde_json::json!([]));
}

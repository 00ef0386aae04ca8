//! Listing recipients and events at 1 000 000 rows each: the statements before keyset
//! pages (one `$1 IS NULL OR …` statement, everything at once, the old indexes) against
//! the pages of `Store::recipients_page` / `Store::events_page` (first page and a page
//! 90 % deep) and `GET /recipients` / `GET /events` of a running `rebound serve`.
//!
//! `cargo bench --bench listing`; `REBOUND_BENCH_ROWS` changes the row count.

#[path = "../tests/support/serve.rs"]
mod serve;

use std::path::Path;
use std::time::Instant;

use rebound::store::{EventFilter, EventKind, RecipientState, Store};
use sqlx::Row;

/// The statements of the listing before keyset pages, as they were.
const OLD_RECIPIENTS: &str = "SELECT id, address, state, hard_count, soft_count, complaint_count, \
     last_bounce_at, last_status, last_reason, state_changed_at, created_at, updated_at FROM recipients \
     WHERE ($1 IS NULL OR state = $1) ORDER BY address_key";
const OLD_EVENTS: &str = "SELECT e.id, e.at, e.source, e.mailbox, e.uid, e.recipient, e.kind, e.class, \
     e.status, e.reason, e.diagnostic, e.decided_by, e.original_message_id, e.campaign_id, e.error, \
     e.blame, e.action, e.domain, e.aliases, e.previous_state \
     FROM events e LEFT JOIN recipients r ON r.id = e.recipient_id \
     WHERE ($1 IS NULL OR r.address_key = $1) AND ($2 IS NULL OR e.kind = $2) \
     AND ($3 IS NULL OR e.mailbox = $3) AND ($4 IS NULL OR e.campaign_id = $4) \
     AND ($5 IS NULL OR e.at >= $5) \
     ORDER BY e.id LIMIT $6";

/// The indexes of migration 10, and the one it replaced.
const NEW_INDEXES: &str = "CREATE INDEX recipients_state_key ON recipients (state, address_key); \
     CREATE INDEX events_recipient_id ON events (recipient_id, id); \
     CREATE INDEX events_kind_id ON events (kind, id)";
const OLD_INDEXES: &str = "DROP INDEX recipients_state_key; DROP INDEX events_recipient_id; \
     DROP INDEX events_kind_id; CREATE INDEX recipients_state ON recipients (state)";

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("rebound.db").display())
}

/// `n` recipients (every third bounced) and one event each (every third a complaint,
/// the rest bounces), in random address order against their ids.
async fn fill(pool: &sqlx::SqlitePool, n: u64) {
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
         INSERT INTO recipients (address, address_key, state, created_at, updated_at) \
         SELECT printf('u%08d@example.org', (i * 7919) % $1), printf('u%08d@example.org', (i * 7919) % $1), \
         CASE WHEN i % 3 = 0 THEN 'bounced' ELSE 'active' END, 0, 0 FROM n",
    )
    .bind(i64::try_from(n).unwrap())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (at, source, recipient, recipient_id, kind, class, decided_by) \
         SELECT id, 'smtp', address, id, CASE WHEN id % 3 = 0 THEN 'complaint' ELSE 'bounce' END, \
         CASE WHEN id % 3 = 0 THEN NULL ELSE 'hard' END, 'builtin' FROM recipients ORDER BY id",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Median wall time of `runs` runs, in ms, and the rows the last one returned.
async fn time<F, Fut>(runs: usize, mut f: F) -> (f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        rows = f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2].as_secs_f64() * 1000.0, rows)
}

fn line(what: &str, (ms, rows): (f64, usize)) {
    println!("{what:<58} {ms:>10.2} ms  {rows:>8} rows");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("REBOUND_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    Store::open(&url(dir.path())).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&url(dir.path())).await.unwrap();
    let t = Instant::now();
    fill(&pool, n).await;
    println!(
        "{n} recipients and {n} events written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // A recipient whose events come late in the table; a cursor 90 % deep.
    let late: String = sqlx::query_scalar("SELECT address_key FROM recipients WHERE id = $1")
        .bind(i64::try_from(n * 9 / 10).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    let deep_key = format!("u{:08}@example.org", n * 9 / 10);
    let deep_id = i64::try_from(n * 9 / 10).unwrap();

    println!("\nbefore: one statement per listing, everything at once, old indexes");
    sqlx::raw_sql(OLD_INDEXES).execute(&pool).await.unwrap();
    let old = |sql: &'static str, binds: Vec<Option<String>>| {
        let pool = pool.clone();
        async move {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            if sql == OLD_EVENTS {
                q = q
                    .bind(None::<String>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(-1_i64);
            }
            q.fetch_all(&pool).await.unwrap().len()
        }
    };
    line(
        "GET /recipients (all of them; any page)",
        time(3, || old(OLD_RECIPIENTS, vec![None])).await,
    );
    line(
        "GET /recipients?state=bounced (all; any page)",
        time(3, || old(OLD_RECIPIENTS, vec![Some("bounced".into())])).await,
    );
    line(
        "events --recipient (late recipient)",
        time(5, || old(OLD_EVENTS, vec![Some(late.clone()), None])).await,
    );
    line(
        "events --kind complaint (all)",
        time(3, || old(OLD_EVENTS, vec![None, Some("complaint".into())])).await,
    );
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {OLD_EVENTS}"))
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(3))
        .collect();
    println!("  old events plan: {}", plan.join("; "));

    println!("\nafter: keyset pages of 100 (migration 10's indexes)");
    sqlx::raw_sql(NEW_INDEXES).execute(&pool).await.unwrap();
    pool.close().await;
    let store = Store::open(&url(dir.path())).await.unwrap();
    let s = &store;
    let recipients = |state: Option<RecipientState>, after: Option<String>| async move {
        s.recipients_page(state, after.as_deref(), 100)
            .await
            .unwrap()
            .items
            .len()
    };
    line(
        "recipients_page, first",
        time(50, || recipients(None, None)).await,
    );
    line(
        "recipients_page, 90 % deep",
        time(50, || recipients(None, Some(deep_key.clone()))).await,
    );
    line(
        "recipients_page state=bounced, first",
        time(50, || recipients(Some(RecipientState::Bounced), None)).await,
    );
    line(
        "recipients_page state=bounced, 90 % deep",
        time(50, || {
            recipients(Some(RecipientState::Bounced), Some(deep_key.clone()))
        })
        .await,
    );
    let events =
        |filter: EventFilter| async move { s.events_page(&filter, 100).await.unwrap().items.len() };
    line(
        "events_page recipient=late",
        time(50, || {
            events(EventFilter {
                recipient: Some(late.clone()),
                ..EventFilter::default()
            })
        })
        .await,
    );
    line(
        "events_page kind=complaint, first",
        time(50, || {
            events(EventFilter {
                kind: Some(EventKind::Message(rebound::verdict::MessageKind::Complaint)),
                ..EventFilter::default()
            })
        })
        .await,
    );
    line(
        "events_page kind=complaint, 90 % deep",
        time(50, || {
            events(EventFilter {
                kind: Some(EventKind::Message(rebound::verdict::MessageKind::Complaint)),
                after: Some(deep_id),
                ..EventFilter::default()
            })
        })
        .await,
    );
    line(
        "events_page (no filter), 90 % deep",
        time(50, || {
            events(EventFilter {
                after: Some(deep_id),
                ..EventFilter::default()
            })
        })
        .await,
    );
    line(
        "recipients() (all, page by page)",
        time(1, || async { s.recipients(None).await.unwrap().len() }).await,
    );
    store.close().await;

    println!("\nafter, over HTTP: rebound serve, a fresh connection per request");
    let server = serve::Server::start(
        dir.path(),
        "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n",
        &[("REBOUND_LOG", "warn")],
    );
    let get = |path: String| {
        let server = &server;
        async move {
            let r = server.request("GET", &path, None);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let v = r.json();
            v["recipients"]
                .as_array()
                .or(v["events"].as_array())
                .map_or(0, Vec::len)
        }
    };
    line(
        "GET /recipients, first page",
        time(50, || get("/recipients".into())).await,
    );
    line(
        "GET /recipients, 90 % deep",
        time(50, || get(format!("/recipients?after={deep_key}"))).await,
    );
    line(
        "GET /recipients?state=bounced&limit=1000, 90 % deep",
        time(20, || {
            get(format!(
                "/recipients?state=bounced&limit=1000&after={deep_key}"
            ))
        })
        .await,
    );
    line(
        "GET /events?recipient=late",
        time(50, || get(format!("/events?recipient={late}"))).await,
    );
    line(
        "GET /events?kind=complaint, 90 % deep",
        time(50, || {
            get(format!("/events?kind=complaint&after={deep_id}"))
        })
        .await,
    );
    drop(server);
}

//! The dashboard overview (`Store::overview`) over N events (default 1 000 000) and as
//! many accepted sends, 100 campaigns over 30 days, 10 000 recipients on 510 domains
//! (60 % of them on ten large ones): how long migration 19's backfill of the rollup
//! takes, the overview of the last 24 hours by hour and of the 30 days by day (the store's
//! query, and the whole `/ui` page from a `rebound serve` over loopback), and what
//! the rollup's upkeep costs a write — bounces booked one `record_verdict` each and sends
//! checkpointed in batches of 10, with the upkeep and (`rollup::set_upkeep(false)`, in
//! the same run, alternated) without it.
//!
//! `cargo bench --bench overview` (or `make bench`). `REBOUND_BENCH_EVENTS=100000`
//! changes N; `REBOUND_BENCH_STORES=sqlite,postgres` (default) picks the stores: a SQLite
//! file, and a database of a private PostgreSQL cluster (tests/support/postgres.rs; its
//! rows are left out with a SKIPPED line without PostgreSQL).

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../tests/support/serve.rs"]
mod serve;

use std::time::{Duration, Instant, UNIX_EPOCH};

use rebound::config::RulesConfig;
use rebound::store::campaigns::{NewCampaign, SendState, SendUpdate};
use rebound::store::rollup::{self, Bucket};
use rebound::store::{Backend, EventContext, Store, Timestamp};
use rebound::verdict::{
    BUILTIN, Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict,
};

const CAMPAIGNS: i64 = 100;
const RECIPIENTS: i64 = 10_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Campaign k starts at `t0 + k × SPACING` (100 campaigns over 30 days).
const SPACING: i64 = 30 * DAY / CAMPAIGNS;
/// Writes timed per round and kind (with the upkeep, without).
const WRITES: usize = 500;

/// `0, 1, …, n - 1` as `n(i)`, in the store's dialect, and the `FROM` that reads it.
fn numbers(backend: Backend, n: i64) -> (String, String) {
    match backend {
        Backend::Sqlite => (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {n}) "
            ),
            "n".into(),
        ),
        Backend::Postgres => (
            String::new(),
            format!("generate_series(0::int8, {n} - 1) AS n(i)"),
        ),
    }
}

/// Recipient `r`'s domain: ten large ones for 60 %, a tail of 500.
const DOMAIN: &str = "CASE WHEN r % 10 < 6 THEN 'big' || (r % 10) || '.example' \
     ELSE 'd' || (r % 500) || '.example' END";

/// The campaigns, `n` sends (accepted over the 4 hours after their campaign starts)
/// and `n` events (from 1 hour to 2 days after: 5 % complaints, the bounces a third
/// hard, a seventh of them sender-blamed, over 12 reasons).
async fn fill(store: &Store, t0: i64, n: i64) {
    let pool = store.pool();
    let (with, from) = numbers(store.backend(), CAMPAIGNS);
    sqlx::query(&format!(
        "{with}INSERT INTO campaigns (name, from_header, subject, state, created_at, started_at, finished_at) \
         SELECT 'c' || i, 'n@example.org', 's', 'done', {t0} + i * {SPACING}, {t0} + i * {SPACING}, \
         {t0} + i * {SPACING} + {} FROM {from}",
        4 * HOUR
    ))
    .execute(pool)
    .await
    .unwrap();
    let per = n / CAMPAIGNS;
    let (with, from) = numbers(store.backend(), n);
    sqlx::query(&format!(
        "{with}INSERT INTO sends (campaign_id, address, address_key, state, attempts, updated_at, sent_at, domain) \
         SELECT c, 'u' || r || '@' || dom, 'u' || r || '@' || dom, 'sent', 1, t, t, dom FROM \
         (SELECT c, r, t, {DOMAIN} AS dom FROM (SELECT i / {per} + 1 AS c, i % {per} % {RECIPIENTS} AS r, \
          {t0} + (i / {per}) * {SPACING} + (i % {per}) * {} AS t FROM {from}) x) y",
        4 * HOUR / per
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "{with}INSERT INTO events (at, source, recipient, kind, class, reason, decided_by, campaign_id, blame, action, domain) \
         SELECT t, 'smtp', 'u' || r || '@' || dom, CASE WHEN j % 20 = 0 THEN 'complaint' ELSE 'bounce' END, \
         CASE WHEN j % 20 = 0 THEN NULL WHEN j % 3 = 0 THEN 'hard' ELSE 'soft' END, \
         CASE WHEN j % 20 = 0 THEN 'feedback' ELSE (CASE j % 12 WHEN 0 THEN 'user-unknown' WHEN 1 THEN 'mailbox-full' \
           WHEN 2 THEN 'blocked' WHEN 3 THEN 'spam-detected' WHEN 4 THEN 'host-unknown' WHEN 5 THEN 'expired' \
           WHEN 6 THEN 'rejected' WHEN 7 THEN 'suspend' WHEN 8 THEN 'filtered' WHEN 9 THEN 'network-error' \
           WHEN 10 THEN 'too-many-conn' ELSE 'undefined' END) END, \
         'builtin', c, CASE WHEN j % 20 = 0 THEN NULL WHEN j % 7 = 0 THEN 'sender' ELSE 'recipient' END, \
         'failed', dom FROM \
         (SELECT j, c, r, {t0} + (c - 1) * {SPACING} + {HOUR} + (j * 104729) % {} AS t, {DOMAIN} AS dom FROM \
          (SELECT i AS j, i % {CAMPAIGNS} + 1 AS c, (i * 7919) % {RECIPIENTS} AS r FROM {from}) x) y",
        2 * DAY
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// Median of `runs` runs, in ms.
async fn median_ms<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Books `WRITES` hard bounces of fresh recipients of campaign 1, one transaction each;
/// mean µs per bounce.
async fn book(store: &Store, round: usize, at: i64) -> f64 {
    let rules = RulesConfig::default();
    let t = Instant::now();
    for i in 0..WRITES {
        let ctx = EventContext {
            campaign_id: Some(1),
            at: Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap())),
            ..EventContext::smtp()
        };
        let rec = RecipientVerdict {
            bounce: Some(BounceClass::Hard),
            blame: Some(Blame::Recipient),
            action: Some("failed".into()),
            ..RecipientVerdict::new(
                format!("w{round}-{i}@big{}.example", i % 10),
                Reason::UserUnknown,
            )
        };
        let v = Verdict {
            kind: MessageKind::Bounce,
            recipients: vec![rec],
            decided_by: BUILTIN.into(),
        };
        let _booked = store.record_verdict(&ctx, &v, &rules).await.unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / WRITES as f64
}

/// Claims and checkpoints a fresh campaign of `WRITES` sends in batches of 10; mean µs
/// per send.
async fn send(store: &Store, round: usize) -> f64 {
    let new = NewCampaign {
        name: format!("bench-{round}"),
        from: "n@example.org".into(),
        subject: "s".into(),
        text: Some("t".into()),
        html: None,
    };
    let addrs = (0..WRITES).map(|i| format!("s{round}-{i}@d{}.example", i % 500));
    let (c, _) = store.create_campaign(&new, addrs).await.unwrap();
    let t = Instant::now();
    loop {
        let claimed = store.claim_sends(c.id, 10).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        let done: Vec<SendUpdate> = claimed
            .iter()
            .map(|x| SendUpdate {
                id: x.id,
                state: SendState::Sent,
                counted: true,
                not_before: None,
                message_id: Some(format!("m{}-{}@example.org", round, x.id)),
                verp_token: None,
                code: Some(250),
                text: Some("ok".into()),
            })
            .collect();
        store.checkpoint_sends(&done).await.unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / WRITES as f64
}

async fn run(label: &str, url: &str, n: i64) {
    let store = Store::open(url).await.unwrap();
    let end = Timestamp::now().0;
    let t0 = end - 30 * DAY;
    let t = Instant::now();
    fill(&store, t0, n).await;
    let filled = t.elapsed().as_secs_f64();
    // The rollup as an upgraded store gets it: migration 19 over what is there.
    let migration = match store.backend() {
        Backend::Sqlite => rebound::store::MIGRATIONS,
        Backend::Postgres => rebound::store::POSTGRES_MIGRATIONS,
    }
    .iter()
    .find(|m| m.0 == 19)
    .unwrap()
    .2;
    sqlx::raw_sql("DROP TABLE rollup")
        .execute(store.pool())
        .await
        .unwrap();
    let t = Instant::now();
    sqlx::raw_sql(migration)
        .execute(store.pool())
        .await
        .unwrap();
    let backfill = t.elapsed().as_secs_f64();
    if store.backend() == Backend::Postgres {
        sqlx::raw_sql("ANALYZE")
            .execute(store.pool())
            .await
            .unwrap();
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollup")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (since_day, since_month) = (Timestamp(end - DAY), Timestamp(end - 30 * DAY));
    let o = store
        .overview(since_month, Timestamp(end), Bucket::Day)
        .await
        .unwrap();
    let total: u64 = o.series.iter().map(|(_, c)| c.sends).sum();
    assert_eq!(
        total as i64,
        n / CAMPAIGNS * CAMPAIGNS,
        "every send counted"
    );
    let day = median_ms(21, || async {
        let o = store
            .overview(since_day, Timestamp(end), Bucket::Hour)
            .await
            .unwrap();
        assert!(!o.series.is_empty());
    })
    .await;
    let month = median_ms(21, || async {
        let o = store
            .overview(since_month, Timestamp(end), Bucket::Day)
            .await
            .unwrap();
        assert_eq!(o.by_domain.len(), 20);
    })
    .await;
    let month_hours = median_ms(21, || async {
        let o = store
            .overview(since_month, Timestamp(end), Bucket::Hour)
            .await
            .unwrap();
        assert!(o.series.len() > 600);
    })
    .await;
    // The whole page as a browser gets it from `rebound serve` (HTML and SVG charts
    // rendered on the server, over loopback): the server time a person waits for.
    let (page_day, page_month) = pages(url, 21);

    // Alternate with and without, so that drift on a noisy machine hits both.
    let (mut booked, mut booked_off, mut sent, mut sent_off) = (vec![], vec![], vec![], vec![]);
    for round in 0..2 {
        rollup::set_upkeep(true);
        booked.push(book(&store, 4 * round, end - HOUR).await);
        sent.push(send(&store, 4 * round + 1).await);
        rollup::set_upkeep(false);
        booked_off.push(book(&store, 4 * round + 2, end - HOUR).await);
        sent_off.push(send(&store, 4 * round + 3).await);
    }
    rollup::set_upkeep(true);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{label:<8} {n} events + {} sends (filled in {filled:.0} s); backfill (migration 19) \
         {backfill:.1} s, {rows} rollup rows; overview 24 h by hour {day:.1} ms, 30 d by day \
         {month:.1} ms, 30 d by hour {month_hours:.1} ms; the /ui page (rebound serve, loopback) \
         24 h {page_day:.1} ms, 30 d {page_month:.1} ms",
        n / CAMPAIGNS * CAMPAIGNS
    );
    println!(
        "{label:<8} bounce booked {:.0} µs with the upkeep vs {:.0} µs without ({:.2}×; rounds \
         {:?} / {:?}); send checkpointed (batches of 10) {:.0} µs vs {:.0} µs ({:.2}×; rounds {:?} / {:?})",
        mean(&booked),
        mean(&booked_off),
        mean(&booked) / mean(&booked_off),
        booked.iter().map(|x| x.round()).collect::<Vec<_>>(),
        booked_off.iter().map(|x| x.round()).collect::<Vec<_>>(),
        mean(&sent),
        mean(&sent_off),
        mean(&sent) / mean(&sent_off),
        sent.iter().map(|x| x.round()).collect::<Vec<_>>(),
        sent_off.iter().map(|x| x.round()).collect::<Vec<_>>(),
    );
    store.close().await;
}

/// Median milliseconds of `GET /ui?range=24h` and `?range=30d` (`runs` each) from a
/// `rebound serve` of this bench's build on the store at `url` (no token: loopback).
fn pages(url: &str, runs: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve::Server::start_open(dir.path(), &format!("[store]\nurl = \"{url}\"\n"), &[]);
    let get = |path: &str| {
        let t = Instant::now();
        let r = serve::request(&server.addr, "GET", path, None, &[]).unwrap();
        (t.elapsed().as_secs_f64() * 1000.0, r)
    };
    let median = |path: &str| {
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let (ms, page) = get(path);
                let html = page.text();
                assert!(
                    page.status == 200 && html.contains("<svg"),
                    "{path}: {html}"
                );
                ms
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[runs / 2]
    };
    (median("/ui?range=24h"), median("/ui?range=30d"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: i64 = std::env::var("REBOUND_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let stores = std::env::var("REBOUND_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for s in stores.split(',').map(str::trim) {
        match s {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
                rt.block_on(run("sqlite", &url, n));
            }
            "postgres" if postgres::available() => {
                let url = postgres::database();
                rt.block_on(run("postgres", &url, n));
            }
            "postgres" => eprintln!("SKIPPED: overview bench on PostgreSQL: not installed"),
            other => panic!("REBOUND_BENCH_STORES: unknown store {other:?}"),
        }
    }
}

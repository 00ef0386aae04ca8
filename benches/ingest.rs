//! Mailbox ingest benchmark: a private Dovecot holding N messages (the Sisimai corpus,
//! cycled, plus ordinary mail), one `poll_once` pass over STLS into a SQLite file store:
//! fetch, detect, policy chain (empty), commit, delete. Reports messages per second and
//! the peak RSS of the polling process for 1 000 and 10 000 messages, each size in a
//! fresh child process so the peaks can be compared.
//!
//! Each store runs with the raw message archive off and on (`REBOUND_BENCH_ARCHIVE=off,on`,
//! the default; `off` or `on` alone), and reports what the archive holds after the pass;
//! `REBOUND_BENCH_ROLLUP=on,off` adds a run without the dashboard's counters (default
//! `on`: kept, as in production).
//! `cargo bench --bench ingest` (or `make bench`). Needs dovecot and openssl, as the
//! integration tests do. `REBOUND_BENCH_SIZES=1000,10000` changes the sizes (e.g.
//! `10000,100000`); `REBOUND_BENCH_SYNCHRONOUS=normal` opens the store with
//! `synchronous = NORMAL` instead of the store's `FULL`, to measure what durability costs;
//! `REBOUND_BENCH_STAGES=0` skips the stages-alone columns (minutes at 100 000). The
//! rates over the first and the last tenth of the pass tell a cost that grows with the
//! mailbox (the last tenth slower) from a constant one.
//! `REBOUND_BENCH_CACHE_KIB=256` gives each of the store's connections that SQLite page
//! cache instead of the store's 1 000 KiB (what the cache weighs in the peak RSS).
//! `cargo bench --bench ingest -- --quit-probe N K [tail]` measures the server alone: N
//! messages emptied K at a time (the first K, or the last with `tail`), one session
//! each, timing each `QUIT` (where the server expunges).
//!
//! Every size runs on each store of `REBOUND_BENCH_STORES` (default `sqlite,postgres`):
//! the SQLite file, and a database of a private PostgreSQL 15 cluster
//! (tests/support/postgres.rs) with its durability turned back on (`fsync`,
//! `synchronous_commit`, `full_page_writes`; `REBOUND_BENCH_PG_DURABLE=0` keeps the test
//! cluster's settings, all off). Without PostgreSQL its rows are left out with a SKIPPED
//! line. The pass's commits are counted as the groups of messages committed together (the
//! poller reports each committed message right after its group's transaction, with no
//! wait in between; a gap of more than 50 µs starts a new group); on PostgreSQL the
//! transaction id counter, which moves only for transactions that write, is read before
//! and after the pass as a check.

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/corpus.rs"]
mod corpus;
#[path = "../tests/support/dovecot.rs"]
mod dovecot;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use rebound::config::{RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::{Poller, Step};
use rebound::store::{EventContext, Store};

/// The binary's allocator and page setting (src/main.rs), so the peak RSS is the one a
/// `rebound poll` process would have.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let mut out = corpus::bsd_messages();
    for i in 0..50 {
        out.push(
            format!(
                "From: Someone <p{i}@example.net>\nTo: bounces@example.org\nSubject: note {i}\n\
                 Message-ID: <n{i}@example.net>\n\nJust a note.\n"
            )
            .into_bytes(),
        );
    }
    out
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Fields of `/proc/self/status` in KiB, as `a/b/c`.
fn status_kib(keys: &[&str]) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    keys.iter().map(|k| value(k)).collect::<Vec<_>>().join("/")
}

/// Child: fill a mailbox with `n` messages, ingest it once, print one result line.
/// The `synchronous` setting the run measures (the store's own is FULL).
fn synchronous() -> rebound::store::Synchronous {
    match std::env::var("REBOUND_BENCH_SYNCHRONOUS").as_deref() {
        Ok("normal" | "NORMAL") => rebound::store::Synchronous::Normal,
        _ => rebound::store::Synchronous::Full,
    }
}

/// Turns the test cluster's durability back on (a production server's defaults).
fn make_durable(cluster: &postgres::Cluster) {
    let admin = format!("{}/postgres", cluster.url());
    // ALTER SYSTEM cannot share a transaction: one statement per psql.
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        postgres::psql(&admin, &format!("ALTER SYSTEM SET {setting} = on"));
    }
    postgres::psql(&admin, "SELECT pg_reload_conf()");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while postgres::psql(&admin, "SHOW fsync") != "on" {
        assert!(
            Instant::now() < deadline,
            "fsync is still off after a reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A fresh database of this process's PostgreSQL cluster, durable unless
/// `REBOUND_BENCH_PG_DURABLE=0`.
fn pg_database() -> String {
    static DURABLE: std::sync::Once = std::sync::Once::new();
    DURABLE.call_once(|| {
        if std::env::var("REBOUND_BENCH_PG_DURABLE").as_deref() != Ok("0") {
            make_durable(postgres::shared());
        }
    });
    postgres::database()
}

/// (the cluster's next transaction id, which only writing transactions move; the
/// transactions committed in this database, reads included) of a PostgreSQL store.
fn pg_counters(url: &str) -> (i64, i64) {
    let row = postgres::psql(
        url,
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, xact_commit \
         FROM pg_stat_database WHERE datname = current_database()",
    );
    let mut f = row.split('|').map(|v| v.parse::<i64>().unwrap());
    (f.next().unwrap(), f.next().unwrap())
}

fn child(n: usize, variant: &str) {
    no_huge_pages();
    // `STORE`, then `+archive` (the raw message archive on, `[store] keep_raw`) and
    // `+norollup` (the dashboard's counters not kept: what their upkeep costs).
    let mut parts = variant.split('+');
    let store = parts.next().unwrap_or(variant);
    let flags: Vec<&str> = parts.collect();
    let archive = flags.contains(&"archive");
    rebound::store::rollup::set_upkeep(!flags.contains(&"norollup"));
    let on_pg = store == "postgres";
    let mut messages = corpus();
    if on_pg {
        // PostgreSQL's text columns refuse a NUL byte, and the store binds what the
        // detector read as it is: a diagnostic with one (quoted-printable `=00` decoded,
        // lhost-office365-01.eml) fails the pass's transaction, and every pass after it.
        // Such messages are left out of the PostgreSQL runs so the pass can be timed.
        messages.retain(|m| {
            let d = rebound::detector::detect(&dovecot::as_served(m));
            let text = serde_json::to_string(&(&d.report, &d.verdict)).unwrap_or_default();
            !text.contains("\\u0000")
        });
    }
    let d = dovecot::Dovecot::start();
    let mut bytes = 0usize;
    for i in 0..n {
        let raw = &messages[i % messages.len()];
        bytes += raw.len();
        d.add_message(raw);
    }
    let work = tempfile::tempdir().unwrap();
    let url = if on_pg {
        pg_database()
    } else {
        format!("sqlite://{}", work.path().join("bench.db").display())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rss_before = peak_rss_kib();
    let (summary, secs, marks, pg_before, archived) = rt.block_on(async {
        let store = Store::open_with_synchronous(&url, synchronous())
            .await
            .unwrap();
        if let Some(kib) = std::env::var("REBOUND_BENCH_CACHE_KIB")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            // Every connection of the pool at once, so each gets the smaller page cache.
            let mut conns = Vec::new();
            for _ in 0..4 {
                let mut c = store.pool().acquire().await.unwrap();
                sqlx::query(&format!("PRAGMA cache_size = -{kib}"))
                    .execute(&mut *c)
                    .await
                    .unwrap();
                conns.push(c);
            }
        }
        let mut cfg = d.config(TlsMode::Starttls);
        cfg.batch_limit = usize::MAX;
        // Dovecot indexes a maildir filled behind its back at the first session (tens of
        // seconds for 100 000 files): done before the clock starts, as a delivery agent
        // would have done it on delivery.
        cfg.timeout = std::time::Duration::from_secs(600);
        let mut warm = rebound::pop3::Client::connect(&rebound::pop3::Options::from_config(&cfg))
            .await
            .unwrap();
        warm.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
        let listed = warm.uidl().await.unwrap().len();
        warm.quit().await.unwrap();
        assert_eq!(listed, n);
        let pg_before = on_pg.then(|| pg_counters(&url));
        let started = Instant::now();
        let marks = Arc::new(Marks::new(n, started));
        let seen = Arc::clone(&marks);
        let p_store = store.clone();
        let p = Poller::new(
            cfg,
            dovecot::PASSWORD.into(),
            store,
            Arc::new(PolicyChain::empty()),
            RulesConfig::default(),
        )
        // Never stops the pass: only notes when each tenth of the messages is committed.
        .with_failpoint(Arc::new(move |step, _uid| {
            if step == Step::AfterCommit {
                seen.committed();
            }
            false
        }))
        .with_archive(if archive {
            std::time::Duration::from_secs(90 * 86_400)
        } else {
            std::time::Duration::ZERO
        });
        let s = p.poll_once().await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        let stats = p_store.archive_stats().await.unwrap();
        (s, secs, marks, pg_before, stats)
    });
    let (first_tenth, last_tenth, rss_deciles) = marks.rates();
    let commits = marks.groups();
    // Write transactions (the transaction id counter) and all transactions, reads
    // included, of the pass; `-` on SQLite.
    let (pg_writes, pg_xacts) = match pg_before {
        Some((xid, xacts)) => {
            // A backend's counters reach pg_stat_database when it goes idle or exits.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let (xid2, xacts2) = pg_counters(&url);
            ((xid2 - xid).to_string(), (xacts2 - xacts).to_string())
        }
        None => ("-".into(), "-".into()),
    };
    // From the last commit to the end of the pass: the last DELEs and QUIT, at which the
    // server expunges every deleted message.
    let tail = secs - marks.last_commit();
    let peak_after_poll = peak_rss_kib();
    // What is resident right after the pass: heap, mapped files, shared memory (SQLite's
    // WAL index).
    let resident = status_kib(&["RssAnon:", "RssFile:", "RssShmem:"]);
    // The stages alone cost minutes at 100 000 (a synced commit per message): skippable.
    let stages = std::env::var("REBOUND_BENCH_STAGES").as_deref() != Ok("0");
    let (detect_us, commit_us) = if stages {
        stage_costs(&messages, n, &work, &rt, on_pg)
    } else {
        (f64::NAN, f64::NAN)
    };
    assert_eq!(summary.processed, n, "{summary}");
    assert_eq!(summary.deleted, n, "{summary}");
    assert_eq!(d.message_count(), 0);
    println!(
        "RESULT n={n} store={variant} archived={} archived_raw={} archived_stored={} commits={commits} commit_rate={:.0} pg_writes={pg_writes} pg_xacts={pg_xacts} secs={secs:.3} rate={:.0} first10={first_tenth:.0} last10={last_tenth:.0} tail_s={tail:.2} bytes={bytes} bounces={} complaints={} other={} peak_rss_kib={} rss_before_kib={rss_before} rss_deciles={rss_deciles} resident_kib={resident} detect_us={detect_us:.0} commit_us={commit_us:.0}",
        archived.messages,
        archived.raw_bytes,
        archived.stored_bytes,
        commits as f64 / secs,
        n as f64 / secs,
        summary.kinds.bounces,
        summary.kinds.complaints,
        summary.kinds.other,
        peak_after_poll
    );
}

/// The server's share alone: a mailbox of `n` messages emptied `k` at a time, one session
/// (UIDL, `k` DELEs of the first messages, or of the last with `tail`, QUIT) each; prints how long each QUIT (the server's expunge) took.
fn quit_probe(n: usize, k: usize, from_end: bool) {
    let messages = corpus();
    let d = dovecot::Dovecot::start();
    for i in 0..n {
        d.add_message(&messages[i % messages.len()]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = d.config(TlsMode::Starttls);
        cfg.timeout = std::time::Duration::from_secs(600);
        let opts = rebound::pop3::Options::from_config(&cfg);
        let mut left = n;
        while left > 0 {
            let mut c = rebound::pop3::Client::connect(&opts).await.unwrap();
            c.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
            let t = Instant::now();
            let listed = c.uidl().await.unwrap();
            let uidl = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let skip = if from_end {
                listed.len().saturating_sub(k)
            } else {
                0
            };
            for e in listed.iter().skip(skip).take(k) {
                c.dele(e.msg).await.unwrap();
            }
            let dele = t.elapsed().as_secs_f64();
            let t = Instant::now();
            c.quit().await.unwrap();
            let quit = t.elapsed().as_secs_f64();
            println!(
                "listed={} deleted={} uidl_s={uidl:.3} dele_s={dele:.3} quit_s={quit:.3}",
                listed.len(),
                k.min(listed.len())
            );
            left -= k.min(listed.len());
        }
    });
}

/// When each tenth of a pass's messages was committed, and the peak RSS then.
struct Marks {
    n: usize,
    started: Instant,
    committed: std::sync::atomic::AtomicUsize,
    /// Nanoseconds since the start at the last commit notification, and the groups seen.
    last: std::sync::Mutex<(u64, usize)>,
    /// (seconds since the start, VmHWM in KiB) at 0 %, 10 %, ..., 100 %.
    at: std::sync::Mutex<Vec<(f64, u64)>>,
}

impl Marks {
    fn new(n: usize, started: Instant) -> Marks {
        Marks {
            n,
            started,
            committed: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::Mutex::new((0, 0)),
            at: std::sync::Mutex::new(vec![(0.0, peak_rss_kib())]),
        }
    }

    fn committed(&self) {
        let mut last = self.last.lock().unwrap();
        // The messages of one transaction are reported back to back: a pause means the
        // next transaction.
        let now = self.started.elapsed().as_nanos() as u64;
        if last.1 == 0 || now - last.0 > 50_000 {
            last.1 += 1;
        }
        let done = self
            .committed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if done * 10 % self.n < 10 && done * 10 >= self.n {
            let t = self.started.elapsed().as_secs_f64();
            self.at.lock().unwrap().push((t, peak_rss_kib()));
        }
        // From after this call's own work (reading the RSS takes tens of µs).
        last.0 = self.started.elapsed().as_nanos() as u64;
    }

    /// How many transactions the pass committed (groups of back-to-back notifications).
    fn groups(&self) -> usize {
        self.last.lock().unwrap().1
    }

    /// Seconds from the start of the pass to its last commit.
    fn last_commit(&self) -> f64 {
        self.at.lock().unwrap().last().map_or(0.0, |a| a.0)
    }

    /// Messages per second over the first and the last tenth, and the peak RSS at each
    /// tenth (`a/b/c...`, KiB).
    fn rates(&self) -> (f64, f64, String) {
        let at = self.at.lock().unwrap();
        let tenth = self.n as f64 / 10.0;
        let rate = |i: usize| match (at.get(i), at.get(i + 1)) {
            (Some(a), Some(b)) if b.0 > a.0 => tenth / (b.0 - a.0),
            _ => f64::NAN,
        };
        let rss: Vec<String> = at.iter().map(|(_, k)| k.to_string()).collect();
        (rate(0), rate(at.len().saturating_sub(2)), rss.join("/"))
    }
}

/// The stages alone, on the same messages: the detector, and one commit per message
/// (µs per message each).
fn stage_costs(
    messages: &[Vec<u8>],
    n: usize,
    work: &tempfile::TempDir,
    rt: &tokio::runtime::Runtime,
    on_pg: bool,
) -> (f64, f64) {
    let served: Vec<Vec<u8>> = (0..n)
        .map(|i| dovecot::as_served(&messages[i % messages.len()]))
        .collect();
    let started = Instant::now();
    let detections: Vec<_> = served
        .iter()
        .map(|raw| rebound::detector::detect(raw))
        .collect();
    let detect_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let commit_us = rt.block_on(async {
        let url = if on_pg {
            pg_database()
        } else {
            format!("sqlite://{}", work.path().join("stage.db").display())
        };
        let store = Store::open_with_synchronous(&url, synchronous())
            .await
            .unwrap();
        let rules = RulesConfig::default();
        let started = Instant::now();
        for (i, d) in detections.iter().enumerate() {
            let ctx = EventContext::mailbox("stage", i.to_string());
            let _ = store
                .record_verdict(&ctx, &d.verdict, &rules)
                .await
                .unwrap();
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    });
    (detect_us, commit_us)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--quit-probe") {
        let from_end = args.get(i + 3).is_some_and(|a| a == "tail");
        quit_probe(
            args[i + 1].parse().unwrap(),
            args[i + 2].parse().unwrap(),
            from_end,
        );
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap(), &args[i + 2]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    if !dovecot::available() {
        eprintln!("ingest: dovecot is not installed; skipped");
        return;
    }
    let sizes: Vec<usize> = std::env::var("REBOUND_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut stores: Vec<String> = std::env::var("REBOUND_BENCH_STORES")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    if stores.iter().any(|s| s == "postgres") && !postgres::available() {
        stores.retain(|s| s != "postgres");
    }
    // Each store with the raw message archive off and on (`REBOUND_BENCH_ARCHIVE=off,on`),
    // one after the other.
    let archive = std::env::var("REBOUND_BENCH_ARCHIVE").unwrap_or_else(|_| "off,on".into());
    // And with the dashboard's counters kept and not (`REBOUND_BENCH_ROLLUP=on,off`;
    // default `on`).
    let rollup = std::env::var("REBOUND_BENCH_ROLLUP").unwrap_or_else(|_| "on".into());
    let stores: Vec<String> = stores
        .iter()
        .flat_map(|s| {
            archive.split(',').map(move |a| match a.trim() {
                "on" => format!("{s}+archive"),
                _ => s.clone(),
            })
        })
        .flat_map(|s| {
            rollup.split(',').map(move |r| match r.trim() {
                "off" => format!("{s}+norollup"),
                _ => s.clone(),
            })
        })
        .collect();
    println!(
        "mailbox ingest: fetch (POP3 STLS, local Dovecot) + detect + commit + DELE; SQLite WAL, synchronous = {:?}; PostgreSQL {}; machine load {}",
        synchronous(),
        if std::env::var("REBOUND_BENCH_PG_DURABLE").as_deref() == Ok("0") {
            "fsync, synchronous_commit and full_page_writes off"
        } else {
            "fsync, synchronous_commit and full_page_writes on"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| store | messages | seconds | msg/s | commits | commits/s | msg per commit | PostgreSQL write transactions (all transactions) | first 10 % (msg/s) | last 10 % (msg/s) | after the last commit (s) | peak RSS (KiB) | detect alone (µs/msg) | commit alone (µs/msg) | mix | archived: messages, bytes stored / raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap();
    let runs = sizes
        .iter()
        .flat_map(|n| stores.iter().map(move |s| (*n, s.clone())));
    for (n, store) in runs {
        let out = Command::new(&exe)
            .arg("--child")
            .arg(n.to_string())
            .arg(&store)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_else(|| {
                panic!(
                    "child {n} failed: {}\n{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .unwrap_or("?")
                .to_owned()
        };
        let commits: f64 = field("commits").parse().unwrap_or(f64::NAN);
        println!(
            "| {store} | {n} | {} | {} | {commits} | {} | {:.1} | {} ({}) | {} | {} | {} | {} | {} | {} | {} bounces, {} complaints, {} other | {}, {} / {} |",
            field("secs"),
            field("rate"),
            field("commit_rate"),
            n as f64 / commits,
            field("pg_writes"),
            field("pg_xacts"),
            field("first10"),
            field("last10"),
            field("tail_s"),
            field("peak_rss_kib"),
            field("detect_us"),
            field("commit_us"),
            field("bounces"),
            field("complaints"),
            field("other"),
            field("archived"),
            field("archived_stored"),
            field("archived_raw")
        );
        eprintln!(
            "  {store} n={n}: peak RSS before the pass {} KiB, at each tenth {}; resident after it (anon/file/shmem) {}",
            field("rss_before_kib"),
            field("rss_deciles"),
            field("resident_kib")
        );
    }
}

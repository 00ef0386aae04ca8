//! Several hosts on one PostgreSQL store (`cargo bench --bench hosts`): `rebound send`
//! processes of the bench build (`CARGO_BIN_EXE_rebound`) on one campaign, the store on
//! a private PostgreSQL 15 cluster (tests/support/postgres.rs), its durability turned
//! back on (`fsync`, `synchronous_commit`, `full_page_writes`: the test cluster runs
//! without them) unless `REBOUND_BENCH_PG_DURABLE=0`.
//!
//! 1. One shared limit: three processes on one campaign of `REBOUND_BENCH_HOSTS_LIMIT_N`
//!    recipients (default 1 500; 0 leaves it out) under one `REBOUND_BENCH_HOSTS_RATE`/s
//!    limit (default 60), against the aiosmtpd test server: every recipient exactly once,
//!    and the most MAIL commands in any 1 s window of the server's clock. The bench fails
//!    (non-zero exit) when a recipient is missing or served twice, a process fails, or a
//!    window holds more than the limit.
//! 2. Unthrottled: 1, 2 and 3 processes (`REBOUND_BENCH_HOSTS_PROCS`, default `1,2,3`) on
//!    one campaign of `REBOUND_BENCH_HOSTS_N` recipients (default 20 000; 0 leaves it out),
//!    a fresh database each, to Postfix's `smtp-sink`; then one process on a SQLite file
//!    with the same campaign. The campaign is queued by the bench before the clock starts.
//!    Reports the wall time and rate, each process's share, the CPU of the senders and of
//!    the database server, and the database's transactions (`pg_stat_database`, and write
//!    transactions from the transaction id counter) per message, and the statements per
//!    message with the ones that took the most server time (`pg_stat_statements`, loaded
//!    by a restart of the cluster; `REBOUND_BENCH_PG_STATEMENTS=0` leaves it out).
//!
//! Without PostgreSQL (or with `REBOUND_SKIP_POSTGRES`) the bench prints a SKIPPED line
//! and does nothing; `REBOUND_SKIP_SMTP=1` leaves out part 1.

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../tests/support/senders.rs"]
mod senders;
#[path = "support/sink.rs"]
mod sink;
#[path = "../tests/support/skip.rs"]
mod skip;
#[path = "../tests/support/smtp.rs"]
mod smtp;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rebound::campaign::{self, CampaignSpec};
use rebound::store::Store;

const FROM: &str = "News <news@example.org>";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `rebound.toml` in `dir` for senders on the store at `url`, `extra` appended to `[smtp]`.
fn write_store_config(dir: &Path, url: &str, port: u16, extra: &str) {
    std::fs::write(
        dir.join("rebound.toml"),
        format!(
            "[store]\nurl = \"{url}\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"{FROM}\"\nbounce_domain = \"bounces.example.org\"\nworkers = 4\n{extra}\n"
        ),
    )
    .unwrap();
}

/// Runs every process in `children` to its end (`timeout` for all); the `sent N` of each
/// log, in order. Panics, with the log, when one fails.
fn wait_all(dir: &Path, children: Vec<Child>, timeout: Duration) -> Vec<u64> {
    let mut sent = Vec::new();
    for (i, mut c) in children.into_iter().enumerate() {
        let status = senders::wait(&mut c, timeout);
        let log = std::fs::read_to_string(dir.join(format!("s{i}.log"))).unwrap_or_default();
        assert!(status.success(), "sender {i}: {status}\n{log}");
        sent.push(
            senders::sent_in(&log).unwrap_or_else(|| panic!("sender {i}: no summary\n{log}")),
        );
    }
    sent
}

/// Queues the campaign file `path` in the store at `url` (so that the senders find it
/// queued and only send); returns the seconds it took.
fn enqueue(rt: &tokio::runtime::Runtime, url: &str, path: &Path) -> f64 {
    rt.block_on(async {
        let store = Store::open(url).await.unwrap();
        let spec = CampaignSpec::load(path).unwrap();
        let t = Instant::now();
        let q = campaign::enqueue(&store, &spec, FROM).await.unwrap();
        assert!(!q.existing);
        let secs = t.elapsed().as_secs_f64();
        store.close().await;
        secs
    })
}

/// (sent rows, seconds from the first `sent_at` to the last) of the store at `url`.
fn sent_span(rt: &tokio::runtime::Runtime, url: &str) -> (i64, f64) {
    rt.block_on(async {
        let store = Store::open(url).await.unwrap();
        let (n, first, last): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MIN(sent_at), 0), COALESCE(MAX(sent_at), 0) \
             FROM sends WHERE state = 'sent'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        store.close().await;
        (n, (last - first) as f64 / 1000.0)
    })
}

/// Turns the test cluster's durability back on (a production server's defaults).
fn make_durable(cluster: &postgres::Cluster) {
    let admin = format!("{}/postgres", cluster.url());
    // ALTER SYSTEM cannot share a transaction: one statement per psql.
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        postgres::psql(&admin, &format!("ALTER SYSTEM SET {setting} = on"));
    }
    postgres::psql(&admin, "SELECT pg_reload_conf()");
    // The reload is asynchronous; a new session sees it once the postmaster has reread.
    let deadline = Instant::now() + Duration::from_secs(10);
    while postgres::psql(&admin, "SHOW fsync") != "on" {
        assert!(
            Instant::now() < deadline,
            "fsync is still off after a reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restarts the cluster with `pg_stat_statements` loaded, so that a run's statements can
/// be counted; false (and the cluster as it was) when the library is not installed.
fn load_statement_stats(cluster: &postgres::Cluster) -> bool {
    let admin = format!("{}/postgres", cluster.url());
    let dir = |name: &str| {
        postgres::psql(
            &admin,
            &format!("SELECT setting FROM pg_config WHERE name = '{name}'"),
        )
    };
    if !Path::new(&dir("PKGLIBDIR"))
        .join("pg_stat_statements.so")
        .exists()
    {
        return false;
    }
    postgres::psql(
        &admin,
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
    );
    let pg_ctl = Path::new(&dir("BINDIR")).join("pg_ctl");
    // As the cluster's owner, as tests/support/postgres.rs starts it; restart keeps the
    // port (postmaster.opts).
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", postgres::USER, "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    let out = cmd
        .args(["restart", "-w", "-t", "60", "-D"])
        .arg(cluster.dir.join("data"))
        .arg("-l")
        .arg(cluster.dir.join("server.log"))
        .current_dir(&cluster.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl restart: {}{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log()
    );
    postgres::psql(&admin, "CREATE EXTENSION pg_stat_statements");
    true
}

/// A run's statements from `pg_stat_statements`: (calls in the database, and per
/// statement its calls and server time in ms, the longest first). A statement is shown
/// by its first and last 60 characters, parameters unnumbered, so that a checkpoint's
/// `VALUES` of every size count as one.
fn statements(cluster: &postgres::Cluster, url: &str) -> (i64, Vec<(String, i64, f64)>) {
    let db = url.rsplit('/').next().unwrap();
    let rows = postgres::psql(
        &format!("{}/postgres", cluster.url()),
        &format!(
            "WITH n AS (SELECT calls, total_exec_time AS ms, \
             regexp_replace(regexp_replace(query, '\\s+', ' ', 'g'), '\\$[0-9]+', '$', 'g') AS q \
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{db}')), \
             s AS (SELECT calls, ms, CASE WHEN length(q) > 120 THEN left(q, 60) || ' … ' || right(q, 60) \
             ELSE q END AS q FROM n) \
             SELECT sum(calls)::bigint, sum(ms), q FROM s GROUP BY q ORDER BY 2 DESC"
        ),
    );
    let per: Vec<(String, i64, f64)> = rows
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            let calls = f.next()?.parse().ok()?;
            let ms = f.next()?.parse().ok()?;
            Some((f.next()?.to_owned(), calls, ms))
        })
        .collect();
    (per.iter().map(|p| p.1).sum(), per)
}

/// What the database server did, read before and after a run.
#[derive(Clone, Copy, Default)]
struct DbCounters {
    xact_commit: i64,
    xact_rollback: i64,
    tup_inserted: i64,
    tup_updated: i64,
    tup_fetched: i64,
    /// The next transaction id: it moves only for transactions that write.
    next_xid: i64,
    /// CPU seconds of the server's processes (the exited backends included).
    cpu_secs: f64,
}

impl DbCounters {
    fn read(url: &str, cluster: &postgres::Cluster) -> DbCounters {
        let row = postgres::psql(
            url,
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched, \
             pg_snapshot_xmax(pg_current_snapshot())::text::bigint \
             FROM pg_stat_database WHERE datname = current_database()",
        );
        let f: Vec<i64> = row.split('|').map(|v| v.parse().unwrap()).collect();
        DbCounters {
            xact_commit: f[0],
            xact_rollback: f[1],
            tup_inserted: f[2],
            tup_updated: f[3],
            tup_fetched: f[4],
            next_xid: f[5],
            cpu_secs: server_cpu_secs(cluster),
        }
    }

    fn since(self, before: DbCounters) -> DbCounters {
        DbCounters {
            xact_commit: self.xact_commit - before.xact_commit,
            xact_rollback: self.xact_rollback - before.xact_rollback,
            tup_inserted: self.tup_inserted - before.tup_inserted,
            tup_updated: self.tup_updated - before.tup_updated,
            tup_fetched: self.tup_fetched - before.tup_fetched,
            next_xid: self.next_xid - before.next_xid,
            cpu_secs: self.cpu_secs - before.cpu_secs,
        }
    }
}

/// (utime + stime, cutime + cstime) of a process, in seconds, from `/proc/PID/stat`.
fn proc_cpu(pid: &str) -> Option<(f64, f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis: state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ppid = f.get(1)?.parse().ok()?;
    Some(((n(14) + n(15)) / tick, (n(16) + n(17)) / tick, ppid))
}

/// The postmaster's CPU, its reaped children's (every backend that exited) and its live
/// children's, in seconds.
fn server_cpu_secs(cluster: &postgres::Cluster) -> f64 {
    let pid = std::fs::read_to_string(cluster.dir.join("data/postmaster.pid"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let Ok(master) = pid.parse::<u32>() else {
        return f64::NAN;
    };
    let (own, reaped, _) = proc_cpu(&pid).unwrap_or_default();
    let live: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|p| proc_cpu(&p))
        .filter(|(_, _, ppid)| *ppid == master)
        .map(|(cpu, _, _)| cpu)
        .sum();
    own + reaped + live
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes only the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Part 1: three senders, one campaign, one limit, the server's clock. Returns the
/// failed checks.
fn shared_limit(cluster: &postgres::Cluster, n: usize, rate: usize) -> Vec<String> {
    let server = smtp::SmtpServer::start(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = cluster.database();
    write_store_config(
        d,
        &url,
        server.port,
        &format!("[[smtp.rate_limit]]\nmessages = {rate}\nper = \"1s\"\n"),
    );
    let path = senders::write_campaign(d, "shared", "r", n);
    // The store is migrated before the three start (as an operator's first run would).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { Store::open(&url).await.unwrap().close().await });
    let load = loadavg();
    let t = Instant::now();
    let children: Vec<Child> = (0..3)
        .map(|i| senders::spawn_send(d, &path, &[], &format!("s{i}.log")))
        .collect();
    let sent = wait_all(d, children, Duration::from_secs(600));
    let wall = t.elapsed().as_secs_f64();
    let per = server.deliveries();
    let missing = (0..n)
        .filter(|i| !per.contains_key(&format!("r{i}@example.com")))
        .count();
    let duplicates: usize = per.values().map(|c| c.saturating_sub(1)).sum();
    let mails = server.mail_times();
    let done: Vec<f64> = server.received().iter().map(|r| r.data_ts).collect();
    let most_mail = smtp::max_in_window(&mails, 1.0);
    let most_done = smtp::max_in_window(&done, 1.0);
    let first = mails.iter().copied().fold(f64::INFINITY, f64::min);
    let last = mails.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let overall = (mails.len().max(1) - 1) as f64 / (last - first).max(1e-9);
    println!(
        "\n## Several hosts: three `rebound send` on one campaign, one {rate}/s limit, PostgreSQL, aiosmtpd\n"
    );
    println!(
        "| recipients | received | missing | duplicates | sent by each process | most MAIL in any 1 s (limit {rate}) | most completed in any 1 s | MAIL rate, first to last (msg/s) | wall time (s) | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {} | {missing} | {duplicates} | {} | {most_mail} | {most_done} | {overall:.2} | {wall:.1} | {load} |",
        per.values().sum::<usize>(),
        sent.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let mut failed = Vec::new();
    if missing > 0 {
        failed.push(format!("{missing} recipients got no message"));
    }
    if duplicates > 0 {
        failed.push(format!("{duplicates} messages went to a recipient twice"));
    }
    if per.len() != n {
        failed.push(format!("{} distinct recipients, {n} queued", per.len()));
    }
    if most_mail > rate {
        failed.push(format!("{most_mail} MAIL in one second, limit {rate}"));
    }
    if sent.iter().sum::<u64>() != n as u64 {
        failed.push(format!("the processes say they sent {sent:?}, {n} queued"));
    }
    failed
}

/// Part 2, one row: `k` unthrottled senders on one campaign of `n` in a fresh store
/// (`cluster`'s, or a SQLite file when `None`).
fn unthrottled(
    cluster: Option<&postgres::Cluster>,
    sink: u16,
    k: usize,
    n: usize,
    rt: &tokio::runtime::Runtime,
    stats: bool,
    notes: &mut Vec<String>,
) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = dir.path();
    let url = match cluster {
        Some(c) => {
            let url = c.database();
            write_store_config(d, &url, sink, "");
            url
        }
        None => {
            senders::write_config(d, sink, "");
            format!("sqlite://{}/rebound.db", d.display())
        }
    };
    let path = senders::write_campaign(d, "bulk", "u", n);
    let enqueue_secs = enqueue(rt, &url, &path);
    if let (Some(c), true) = (cluster, stats) {
        let db = url.rsplit('/').next().unwrap();
        postgres::psql(
            &format!("{}/postgres", c.url()),
            &format!(
                "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = '{db}'), 0)"
            ),
        );
    }
    let before = cluster.map(|c| DbCounters::read(&url, c));
    let load = loadavg();
    let cpu = children_cpu_secs();
    let t = Instant::now();
    let children: Vec<Child> = (0..k)
        .map(|i| senders::spawn_send(d, &path, &[], &format!("s{i}.log")))
        .collect();
    let sent = wait_all(d, children, Duration::from_secs(1200));
    let wall = t.elapsed().as_secs_f64();
    let cpu = children_cpu_secs() - cpu;
    assert_eq!(sent.iter().sum::<u64>(), n as u64, "sent by the processes");
    let n_f = n as f64;
    let share = sent
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" / ");
    let db = match (cluster, before) {
        (Some(c), Some(before)) => {
            // A backend's counters reach pg_stat_database when it exits: after the
            // senders' connections close.
            std::thread::sleep(Duration::from_millis(1000));
            let d = DbCounters::read(&url, c).since(before);
            let per_msg = if stats {
                let (calls, per) = statements(c, &url);
                notes.push(format!(
                    "PostgreSQL, {k} processes: the statements that took the most server time, \
                     per message sent (calls, ms):"
                ));
                for (query, calls, ms) in per.iter().take(6) {
                    notes.push(format!(
                        "  {:.3} calls, {:.4} ms: {query}",
                        *calls as f64 / n_f,
                        ms / n_f
                    ));
                }
                format!("{:.2}", calls as f64 / n_f)
            } else {
                "—".into()
            };
            format!(
                "{per_msg} | {:.1} | {:.2} | {:.2} ({} rolled back) | {:.2} | {:.0} | {:.2} ins, {:.2} upd, {:.1} fetched",
                d.cpu_secs,
                d.cpu_secs * 1000.0 / n_f,
                d.xact_commit as f64 / n_f,
                d.xact_rollback,
                d.next_xid as f64 / n_f,
                d.next_xid as f64 / wall,
                d.tup_inserted as f64 / n_f,
                d.tup_updated as f64 / n_f,
                d.tup_fetched as f64 / n_f,
            )
        }
        _ => "— | — | — | — | — | — | —".into(),
    };
    // After the server's counters are read: this session is not the run's.
    let (rows, span) = sent_span(rt, &url);
    assert_eq!(rows, n as i64, "sent rows in the store");
    println!(
        "| {} | {k} | {n} | {enqueue_secs:.1} | {wall:.1} | **{:.0}** | {:.0} | {share} | {cpu:.1} | {:.2} | {db} | {load} |",
        if cluster.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        n_f / wall,
        n_f / span.max(0.001),
        cpu * 1000.0 / n_f,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    if !postgres::available() {
        return;
    }
    let cluster = match std::panic::catch_unwind(postgres::shared) {
        Ok(c) => c,
        Err(_) => {
            skip::skip_current("the private PostgreSQL did not start (see the panic above)");
            return;
        }
    };
    let durable = std::env::var("REBOUND_BENCH_PG_DURABLE").as_deref() != Ok("0");
    if durable {
        make_durable(cluster);
    }
    // Statement counts need the library loaded at the server's start: a restart.
    let stats = std::env::var("REBOUND_BENCH_PG_STATEMENTS").as_deref() != Ok("0")
        && load_statement_stats(cluster);
    let settings = postgres::psql(
        &format!("{}/postgres", cluster.url()),
        "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')",
    );
    println!(
        "PostgreSQL {} (private cluster: {settings}); machine load {}",
        cluster.version,
        loadavg()
    );

    let mut failed = Vec::new();
    let limit_n = env_usize("REBOUND_BENCH_HOSTS_LIMIT_N", 1500);
    if limit_n > 0 && !smtp::skip() {
        let rate = env_usize("REBOUND_BENCH_HOSTS_RATE", 60);
        failed = shared_limit(cluster, limit_n, rate);
    }

    let n = env_usize("REBOUND_BENCH_HOSTS_N", 20_000);
    if n > 0 {
        let procs: Vec<usize> = std::env::var("REBOUND_BENCH_HOSTS_PROCS")
            .unwrap_or_else(|_| "1,2,3".into())
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let logdir = tempfile::tempdir().unwrap();
        let sink = sink::start_sink(&logdir.path().join("smtp-sink.log"));
        println!(
            "\n## Several hosts: unthrottled `rebound send` processes on one campaign, 4 workers each, smtp-sink\n"
        );
        println!(
            "| store | processes | recipients | enqueue (s) | wall (s) | msg/s (wall) | msg/s (first to last sent_at) | sent by each | senders' CPU (s) | senders' CPU per msg (ms) | DB statements per msg | DB CPU (s) | DB CPU per msg (ms) | DB transactions per msg | DB write transactions per msg | DB write transactions/s | DB rows per msg | load at start |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut notes = Vec::new();
        for k in procs {
            unthrottled(Some(cluster), sink.port, k, n, &rt, stats, &mut notes);
        }
        unthrottled(None, sink.port, 1, n, &rt, false, &mut notes);
        println!();
        for line in notes {
            println!("{line}");
        }
    }
    println!("\nmachine load at the end: {}", loadavg());
    if !failed.is_empty() {
        eprintln!("hosts bench FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
}

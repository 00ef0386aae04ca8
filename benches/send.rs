//! Sending benchmarks (`cargo bench --bench send`):
//!
//! 1. Unthrottled throughput to Postfix's `smtp-sink` on loopback with 1, 4 and 8
//!    connections: the whole queue (claim, render, sign, send, checkpoint in SQLite) and
//!    the bare sender alone.
//! 2. Rate accuracy: a 50/s limit over 20 s, four workers, against the aiosmtpd test
//!    server, measured with the server's timestamps: the achieved rate and the most
//!    messages in any one-second window.
//!
//! 3. Scale: one campaign of `REBOUND_BENCH_SEND_SCALE_N` recipients (default 100 000;
//!    the BENCHMARKS.md numbers are for 1 000 000) queued and sent to smtp-sink with four
//!    workers, unthrottled: the enqueue time, how long a mailbox pass's group commit
//!    (ten verdicts, from a second connection pool) takes while the enqueue runs, the
//!    rate while 80–90 % are pending against the rate over the last 10 %, and the RSS.
//! 4. Two and three `rebound send` processes on one store under one 50/s limit (aiosmtpd,
//!    the server's clock): the most MAIL commands in any one second, and recipients who
//!    got a message twice.
//!
//! 5. Two and three `rebound send` processes on one store, each with a campaign of its
//!    own, under one rolling-window quota `40/4s,window` (aiosmtpd, the server's clock):
//!    the most MAIL commands in any 4 s window and recipients who got a message twice.
//!
//! `REBOUND_BENCH_SEND_N` sets the messages per throughput run (default 5000; 0 leaves
//! the throughput runs out);
//! `REBOUND_BENCH_SEND_SCALE_N=0` leaves out the scale run; `REBOUND_BENCH_SEND_ONLY=quota`
//! runs only the quota part (5).

#[path = "support/sink.rs"]
mod sink;
#[path = "../tests/support/smtp.rs"]
mod smtp;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rebound::campaign::Renderer;
use rebound::config::TlsMode;
use rebound::queue::{Queue, QueueOptions};
use rebound::ratelimit::{RateLimiter, RateSpec};
use rebound::smtp::{Envelope, Mailer, SmtpMailer, SmtpMailerBuilder};
use rebound::store::Store;
use rebound::store::campaigns::NewCampaign;
use rebound::verp::Signer;

fn mailer(port: u16, conns: usize) -> SmtpMailer {
    SmtpMailerBuilder::new("127.0.0.1", port)
        .tls(TlsMode::None)
        .max_connections(conns)
        .hello_name("bench.example.org")
        .build()
        .unwrap()
}

async fn campaign(dir: &std::path::Path, n: usize) -> (Store, Renderer) {
    let (store, c) = sink::newsletter(dir, n).await;
    (store, Renderer::new(c, "bounces.example.org").unwrap())
}

async fn queue_throughput(port: u16, conns: usize, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, renderer) = campaign(dir.path(), n).await;
    let m = Arc::new(mailer(port, conns));
    let options = QueueOptions {
        workers: conns,
        relay: "127.0.0.1".into(),
        ..QueueOptions::default()
    };
    let q = Queue::new(
        store.clone(),
        m.clone(),
        Arc::new(RateLimiter::new([])),
        Arc::new(Signer::new(b"bench").unwrap()),
        options,
    );
    let t = Instant::now();
    let s = q.run(renderer).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(s.finished && s.progress.sent == n as u64, "{s:?}");
    m.shutdown().await;
    store.close().await;
    n as f64 / secs
}

async fn sender_throughput(port: u16, conns: usize, n: usize) -> f64 {
    let m = Arc::new(mailer(port, conns));
    let body: Vec<u8> = format!(
        "From: news@example.org\r\nTo: user@example.com\r\nSubject: Benchmark\r\nMessage-ID: <b@example.org>\r\n\r\n{}",
        "A short newsletter body.\r\n".repeat(40)
    )
    .into_bytes();
    let body = Arc::new(body);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (m, body) = (m.clone(), body.clone());
        let count = n / conns + usize::from(w < n % conns);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let env = Envelope::new(
                    "bounces+1-2-0011223344556677@bounces.example.org",
                    format!("u{w}-{i}@example.com"),
                );
                m.send_raw(&env, &body).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    m.shutdown().await;
    rate
}

async fn rate_accuracy(limit: u32, secs: u32) -> (usize, f64, usize, usize) {
    let server = smtp::SmtpServer::start(serde_json::json!({}));
    let n = (limit * secs) as usize + 1;
    let dir = tempfile::tempdir().unwrap();
    let (store, renderer) = campaign(dir.path(), n).await;
    let m = Arc::new(mailer(server.port, 4));
    let limiter = RateLimiter::new([RateSpec::new(limit, Duration::from_secs(1)).unwrap()]);
    let options = QueueOptions {
        workers: 4,
        ..QueueOptions::default()
    };
    let q = Queue::new(
        store,
        m.clone(),
        Arc::new(limiter),
        Arc::new(Signer::new(b"bench").unwrap()),
        options,
    );
    let s = q.run(renderer).await.unwrap();
    assert!(s.finished);
    m.shutdown().await;
    let mails = server.mail_times();
    let first = mails.iter().copied().fold(f64::INFINITY, f64::min);
    let last = mails.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // n messages span n − 1 intervals.
    let rate = (mails.len() - 1) as f64 / (last - first);
    let done: Vec<f64> = server.received().iter().map(|r| r.data_ts).collect();
    (
        mails.len(),
        rate,
        smtp::max_in_window(&mails, 1.0),
        smtp::max_in_window(&done, 1.0),
    )
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Scale {
    enqueue_secs: f64,
    commits: usize,
    commit_failures: usize,
    commit_max_ms: f64,
    rate_pending: f64,
    rate_end: f64,
    rate_all: f64,
    rss_mb: Vec<(u32, f64)>,
}

/// A mailbox pass's group commit (ten soft bounces) every 200 ms from a second pool
/// until `stop`; returns (commits, failures, slowest in ms).
async fn mailbox_commits(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize, f64) {
    use rebound::store::EventContext;
    use rebound::verdict::Verdict;
    let store = Store::open(&url).await.unwrap();
    let (mut ok, mut failed, mut slowest) = (0, 0, 0f64);
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let items: Vec<(EventContext, Verdict)> = (0..10)
            .map(|_| {
                i += 1;
                (
                    EventContext::smtp(),
                    rebound::queue::smtp_verdict(
                        &format!("pass{i}@example.net"),
                        &rebound::smtp::Error::reply(
                            rebound::smtp::Stage::Rcpt,
                            452,
                            "4.2.2 mailbox full",
                        ),
                        "",
                    ),
                )
            })
            .collect();
        let t = Instant::now();
        match store
            .record_verdicts(&items, &rebound::config::RulesConfig::default())
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                eprintln!("mailbox commit during enqueue failed: {e}");
                failed += 1;
            }
        }
        slowest = slowest.max(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.close().await;
    (ok, failed, slowest)
}

async fn scale(port: u16, n: usize) -> Scale {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let url = format!("sqlite://{}/scale.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pass = tokio::spawn(mailbox_commits(url.clone(), stop.clone()));
    let addrs: Vec<String> = (0..n).map(|i| format!("user{i}@example.com")).collect();
    let t = Instant::now();
    let (c, queued) = store
        .create_campaign(
            &NewCampaign {
                name: "scale".into(),
                from: "News <news@example.org>".into(),
                subject: "Benchmark".into(),
                text: Some("A short newsletter body.\n".repeat(20)),
                html: None,
            },
            &addrs,
        )
        .await
        .unwrap();
    let enqueue_secs = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (commits, commit_failures, commit_max_ms) = pass.await.unwrap();
    assert_eq!(queued, n as u64);
    drop(addrs);
    let renderer = Renderer::new(c, "bounces.example.org").unwrap();
    let m = Arc::new(mailer(port, 4));
    let q = Queue::new(
        store.clone(),
        m.clone(),
        Arc::new(RateLimiter::new([])),
        Arc::new(Signer::new(b"bench").unwrap()),
        QueueOptions {
            workers: 4,
            relay: "127.0.0.1".into(),
            ..QueueOptions::default()
        },
    );
    let progress = q.progress();
    let sampler = tokio::spawn(async move {
        // (seconds since start, messages sent, RSS in kB), once a second.
        let start = Instant::now();
        let mut samples = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = progress.snapshot();
            samples.push((start.elapsed().as_secs_f64(), p.sent, rss_kb()));
            if p.sent >= n as u64 {
                return samples;
            }
        }
    });
    let t = Instant::now();
    let s = q.run(renderer).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(s.finished && s.progress.sent == n as u64, "{s:?}");
    let samples = sampler.await.unwrap();
    m.shutdown().await;
    store.close().await;
    // The rate between two fractions done, from the samples.
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(_, sent, _)| *sent as f64 >= frac * n as f64)
            .copied()
            .unwrap_or((secs, n as u64, 0))
    };
    let rate = |a: f64, b: f64| {
        let (ta, sa, _) = at(a);
        let (tb, sb, _) = at(b);
        (sb - sa) as f64 / (tb - ta).max(0.001)
    };
    let rss_mb = [10u32, 20, 50, 80, 100]
        .iter()
        .map(|pct| (*pct, at(f64::from(*pct) / 100.0).2 as f64 / 1024.0))
        .collect();
    Scale {
        enqueue_secs,
        commits,
        commit_failures,
        commit_max_ms,
        rate_pending: rate(0.10, 0.20),
        rate_end: rate(0.90, 0.999),
        rate_all: n as f64 / secs,
        rss_mb,
    }
}

/// A config for `rebound send` processes on one store in `d` with the `[smtp]` line
/// `limit`, the store created; returns the command maker.
fn senders_store(
    d: &std::path::Path,
    port: u16,
    limit: &str,
) -> impl Fn(&[&str]) -> Command + use<> {
    std::fs::write(
        d.join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/s.db\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\nworkers = 4\n\
             {limit}\n",
            d.display(),
        ),
    )
    .unwrap();
    let config = d.join("rebound.toml");
    let cmd = move |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rebound"));
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("REBOUND_VERP_SECRET", "bench")
            .env("REBOUND_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    assert!(cmd(&["campaigns"]).status().unwrap().success());
    cmd
}

/// `k` `rebound send` processes on one store, 50/s, two of them on one campaign:
/// (most MAIL in one second, recipients served twice, total, seconds).
fn senders(k: usize) -> (usize, usize, usize, f64) {
    let server = smtp::SmtpServer::start(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cmd = senders_store(
        d,
        server.port,
        "[[smtp.rate_limit]]\nmessages = 50\nper = \"1s\"",
    );
    let mut total = 0;
    for (name, count) in [("one", 300), ("two", 300)] {
        let list: Vec<String> = (0..count)
            .map(|i| format!("{name}{i}@example.com"))
            .collect();
        total += count;
        std::fs::write(d.join(format!("{name}.txt")), list.join("\n")).unwrap();
        std::fs::write(
            d.join(format!("{name}.toml")),
            format!("name = \"{name}\"\nsubject = \"s\"\ntext = \"b\"\n[recipients]\nfile = \"{name}.txt\"\n"),
        )
        .unwrap();
    }
    let t = Instant::now();
    let mut children: Vec<Child> = (0..k)
        .map(|i| {
            let c = if i < 2 { "one" } else { "two" };
            let path = d.join(format!("{c}.toml"));
            cmd(&["send", "--quiet", "--campaign", path.to_str().unwrap()])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let secs = t.elapsed().as_secs_f64();
    let per = server.deliveries();
    let expected = if k == 2 { 300 } else { total };
    assert_eq!(per.len(), expected);
    let twice = per.values().filter(|n| **n > 1).count();
    (
        smtp::max_in_window(&server.mail_times(), 1.0),
        twice,
        per.len(),
        secs,
    )
}

/// `k` `rebound send` processes on one store, each with a campaign of `per` recipients,
/// under the quota `spec` (`limit` per `window` seconds): (most MAIL in any window,
/// recipients served twice, total, seconds).
fn quota_senders(k: usize, per: usize, spec: &str, window: f64) -> (usize, usize, usize, f64) {
    let server = smtp::SmtpServer::start(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cmd = senders_store(d, server.port, &format!("rate_limit = [\"{spec}\"]"));
    for i in 0..k {
        let name = format!("q{i}");
        let list: Vec<String> = (0..per)
            .map(|j| format!("{name}-{j}@example.com"))
            .collect();
        std::fs::write(d.join(format!("{name}.txt")), list.join("\n")).unwrap();
        std::fs::write(
            d.join(format!("{name}.toml")),
            format!("name = \"{name}\"\nsubject = \"s\"\ntext = \"b\"\n[recipients]\nfile = \"{name}.txt\"\n"),
        )
        .unwrap();
    }
    let t = Instant::now();
    let mut children: Vec<Child> = (0..k)
        .map(|i| {
            let path = d.join(format!("q{i}.toml"));
            cmd(&["send", "--quiet", "--campaign", path.to_str().unwrap()])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let secs = t.elapsed().as_secs_f64();
    let seen = server.deliveries();
    assert_eq!(seen.len(), k * per);
    let twice = seen.values().filter(|n| **n > 1).count();
    (
        smtp::max_in_window(&server.mail_times(), window),
        twice,
        seen.len(),
        secs,
    )
}

/// What one reservation costs with `held` times in a `50000/day` window (and one smooth
/// limit beside it), on a store file: the mean over 50 reservations of 2 times each.
async fn window_reservation_cost(held: i64) -> Duration {
    use rebound::store::campaigns::{RateRequest, RateWindow};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = Store::open(&url).await.unwrap();
    let windows = [RateWindow {
        name: "50000/day".into(),
        limit: 50_000,
        span_us: 86_400_000_000,
    }];
    let smooth = vec!["14/s".to_owned()];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let req = RateRequest {
        smooth: &smooth,
        windows: &windows,
        batch: 2,
        relay: Some("127.0.0.1:25"),
        released: &[],
    };
    store
        .reserve_rate(&req, |_| {
            (
                (),
                (0..held).map(|i| now - 80_000_000_000 + i * 1000).collect(),
            )
        })
        .await
        .unwrap();
    let t = Instant::now();
    for _ in 0..50 {
        store
            .reserve_rate(&req, |_| ((), Vec::new()))
            .await
            .unwrap();
    }
    t.elapsed() / 50
}

fn quota_table() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("\n## Sending: one shared-quota reservation, 50000/day window, store file\n");
    println!("| times in the window | ms per reservation |");
    println!("|---|---|");
    for held in [1_000, 10_000, 49_000] {
        let d = rt.block_on(window_reservation_cost(held));
        println!("| {held} | {:.2} |", d.as_secs_f64() * 1000.0);
    }

    let (spec, limit, window) = ("40/4s,window", 40, 4.0);
    println!("\n## Sending: several `rebound send` on one store, one quota {spec}, aiosmtpd\n");
    println!(
        "| processes | messages | window | most MAIL in any window (limit {limit}) | recipients sent twice | seconds |"
    );
    println!("|---|---|---|---|---|---|");
    for (k, per) in [(2, 80), (3, 54)] {
        let (most, twice, total, secs) = quota_senders(k, per, spec, window);
        println!("| {k} | {total} | {window} s | {most} | {twice} | {secs:.1} |");
    }
}

fn main() {
    if std::env::var("REBOUND_BENCH_SEND_ONLY").as_deref() == Ok("quota") {
        if !smtp::skip() {
            quota_table();
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("REBOUND_BENCH_SEND_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let logdir = tempfile::tempdir().unwrap();
    let sink = sink::start_sink(&logdir.path().join("smtp-sink.log"));
    println!("## Sending: unthrottled throughput to smtp-sink ({n} messages per run)\n");
    println!("| connections | whole queue (msg/s) | sender alone (msg/s) |");
    println!("|---|---|---|");
    for conns in [1, 4, 8].into_iter().filter(|_| n > 0) {
        let q = rt.block_on(queue_throughput(sink.port, conns, n));
        let s = rt.block_on(sender_throughput(sink.port, conns, n));
        println!("| {conns} | {q:.0} | {s:.0} |");
    }
    let scale_n: usize = std::env::var("REBOUND_BENCH_SEND_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if scale_n > 0 {
        let r = rt.block_on(scale(sink.port, scale_n));
        println!("\n## Sending: one campaign of {scale_n} recipients, 4 workers, smtp-sink\n");
        println!(
            "| enqueue (s) | mailbox commits during enqueue (failed, slowest ms) | msg/s 80–90 % pending | msg/s last 10 % | msg/s overall |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {:.1} | {} ({}, {:.0}) | {:.0} | {:.0} | {:.0} |",
            r.enqueue_secs,
            r.commits,
            r.commit_failures,
            r.commit_max_ms,
            r.rate_pending,
            r.rate_end,
            r.rate_all
        );
        let rss: Vec<String> = r
            .rss_mb
            .iter()
            .map(|(p, mb)| format!("{p} %: {mb:.0} MB"))
            .collect();
        println!("\nRSS (bench process) when sent: {}", rss.join(", "));
    }
    drop(sink);
    if smtp::skip() {
        return;
    }
    let (limit, secs) = (50, 20);
    let (count, rate, max_mail, max_done) = rt.block_on(rate_accuracy(limit, secs));
    println!("\n## Sending: rate accuracy, limit {limit}/s over {secs} s, 4 workers, aiosmtpd\n");
    println!(
        "| messages | achieved rate (msg/s) | error | most MAIL in any 1 s | most completed in any 1 s |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {count} | {rate:.2} | {:+.2}% | {max_mail} | {max_done} |",
        (rate / f64::from(limit) - 1.0) * 100.0
    );
    println!("\n## Sending: several `rebound send` on one store, one 50/s limit, aiosmtpd\n");
    println!("| processes | recipients | seconds | most MAIL in any 1 s | sent twice |");
    println!("|---|---|---|---|---|");
    for k in [2, 3] {
        let (most, twice, total, secs) = senders(k);
        println!("| {k} | {total} | {secs:.1} | {most} | {twice} |");
    }
    quota_table();
}

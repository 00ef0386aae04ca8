//! Sending benchmarks (`cargo bench --bench send`):
//!
//! 1. Unthrottled throughput to Postfix's `smtp-sink` on loopback with 1, 4 and 8
//!    connections: the whole queue (claim, render, sign, send, checkpoint in SQLite) and
//!    the bare sender alone.
//! 2. Rate accuracy: a 50/s limit over 20 s, four workers, against the aiosmtpd test
//!    server, measured with the server's timestamps: the achieved rate and the most
//!    messages in any one-second window.
//!
//! `REBOUND_BENCH_SEND_N` sets the messages per throughput run (default 5000).

#[path = "../tests/support/smtp.rs"]
mod smtp;

use std::net::TcpListener;
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

struct Sink {
    child: Child,
    port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sink(log: &std::path::Path) -> Sink {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new("smtp-sink")
        .args([
            "-u",
            "nobody",
            "-m",
            "64",
            &format!("127.0.0.1:{port}"),
            "256",
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("starting smtp-sink (package postfix)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Sink { child, port }
}

fn mailer(port: u16, conns: usize) -> SmtpMailer {
    SmtpMailerBuilder::new("127.0.0.1", port)
        .tls(TlsMode::None)
        .max_connections(conns)
        .hello_name("bench.example.org")
        .build()
        .unwrap()
}

async fn campaign(dir: &std::path::Path, n: usize) -> (Store, Renderer) {
    let store = Store::open(&format!("sqlite://{}/bench.db", dir.display()))
        .await
        .unwrap();
    let addrs: Vec<String> = (0..n).map(|i| format!("user{i}@example.com")).collect();
    let (c, _) = store
        .create_campaign(
            &NewCampaign {
                name: "bench".into(),
                from: "News <news@example.org>".into(),
                subject: "Benchmark".into(),
                text: Some("A short newsletter body.\n".repeat(20)),
                html: Some("<p>A short newsletter body.</p>\n".repeat(20)),
            },
            &addrs,
        )
        .await
        .unwrap();
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("REBOUND_BENCH_SEND_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let logdir = tempfile::tempdir().unwrap();
    let sink = start_sink(&logdir.path().join("smtp-sink.log"));
    println!("## Sending: unthrottled throughput to smtp-sink ({n} messages per run)\n");
    println!("| connections | whole queue (msg/s) | sender alone (msg/s) |");
    println!("|---|---|---|");
    for conns in [1, 4, 8] {
        let q = rt.block_on(queue_throughput(sink.port, conns, n));
        let s = rt.block_on(sender_throughput(sink.port, conns, n));
        println!("| {conns} | {q:.0} | {s:.0} |");
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
}

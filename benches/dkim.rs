//! DKIM benchmarks (`cargo bench --bench dkim`):
//!
//! 1. Rendering one campaign message (the `benches/send.rs` newsletter: text and HTML,
//!    about 1.5 kB) unsigned, signed with RSA-2048 and with Ed25519: µs per message on
//!    one thread, and the difference, the signing cost.
//! 2. The whole queue (claim, render, sign, send, checkpoint in SQLite) to Postfix's
//!    `smtp-sink` on loopback, four connections, unthrottled: msg/s unsigned and signed.
//!
//! Keys come from `openssl genpkey`. `REBOUND_BENCH_DKIM_N` sets the messages per render
//! run (default 2000); `REBOUND_BENCH_DKIM_SEND_N` per queue run (default 3000; 0 leaves
//! the queue runs out).

#[path = "support/sink.rs"]
mod sink;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use rebound::campaign::Renderer;
use rebound::config::TlsMode;
use rebound::dkim::Dkim;
use rebound::queue::{Queue, QueueOptions};
use rebound::ratelimit::RateLimiter;
use rebound::smtp::{Mailer, SmtpMailerBuilder};
use rebound::store::Store;
use rebound::verp::Signer;

fn key(dir: &Path, kind: &str) -> Arc<Dkim> {
    let path = dir.join(format!("{kind}.pem"));
    let mut args = vec![
        "genpkey",
        "-algorithm",
        kind,
        "-out",
        path.to_str().unwrap(),
    ];
    if kind == "RSA" {
        args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    let ok = Command::new("openssl")
        .args(&args)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(ok.success(), "openssl {args:?}");
    let pem = std::fs::read_to_string(&path).unwrap();
    Arc::new(Dkim::from_pem("example.org", "bench", &pem, &path).unwrap())
}

async fn campaign(dir: &Path, n: usize) -> (Store, Renderer) {
    let (store, c) = sink::newsletter(dir, n).await;
    let renderer = Renderer::new(c, "bounces.example.org")
        .unwrap()
        .with_public_url(Some("https://rebound.example.org"));
    (store, renderer)
}

/// µs per rendered message, the best of three runs of `n`.
fn render_us(renderer: &Renderer, n: usize) -> f64 {
    let signer = Signer::new(b"bench").unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            let r = renderer
                .render(&signer, i as i64 + 1, "user@example.com")
                .unwrap();
            std::hint::black_box(r.bytes);
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    best
}

async fn queue_throughput(port: u16, n: usize, dkim: Option<Arc<Dkim>>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, renderer) = campaign(dir.path(), n).await;
    let mailer = Arc::new(
        SmtpMailerBuilder::new("127.0.0.1", port)
            .tls(TlsMode::None)
            .max_connections(4)
            .hello_name("bench.example.org")
            .build()
            .unwrap(),
    );
    let q = Queue::new(
        store.clone(),
        mailer.clone(),
        Arc::new(RateLimiter::new([])),
        Arc::new(Signer::new(b"bench").unwrap()),
        QueueOptions {
            workers: 4,
            relay: "127.0.0.1".into(),
            ..QueueOptions::default()
        },
    );
    let t = Instant::now();
    let s = q.run(renderer.with_dkim(dkim)).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(s.finished && s.progress.sent == n as u64, "{s:?}");
    mailer.shutdown().await;
    store.close().await;
    n as f64 / secs
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        ("unsigned", None),
        ("RSA-2048", Some(key(dir.path(), "RSA"))),
        ("Ed25519", Some(key(dir.path(), "ED25519"))),
    ];
    let n = env("REBOUND_BENCH_DKIM_N", 2000);
    let (store, renderer) = rt.block_on(campaign(dir.path(), 1));
    println!("## DKIM: rendering one campaign message ({n} per run, best of 3, one thread)\n");
    println!("| key | render (µs/msg) | signing (µs/msg) |");
    println!("|---|---|---|");
    let mut base = 0.0;
    for (name, dkim) in &keys {
        let us = render_us(&renderer.clone().with_dkim(dkim.clone()), n);
        if dkim.is_none() {
            base = us;
            println!("| {name} | {us:.1} | – |");
        } else {
            println!("| {name} | {us:.1} | {:.1} |", us - base);
        }
    }
    rt.block_on(store.close());

    let send_n = env("REBOUND_BENCH_DKIM_SEND_N", 3000);
    if send_n == 0 {
        return;
    }
    let logdir = tempfile::tempdir().unwrap();
    let sink = sink::start_sink(&logdir.path().join("smtp-sink.log"));
    println!(
        "\n## DKIM: whole queue to smtp-sink, 4 connections, unthrottled ({send_n} messages per run)\n"
    );
    println!("| key | msg/s |");
    println!("|---|---|");
    for (name, dkim) in &keys {
        let rate = rt.block_on(queue_throughput(sink.port, send_n, dkim.clone()));
        println!("| {name} | {rate:.0} |");
    }
}

//! What the sending benches share: Postfix's `smtp-sink` on a free loopback port, and the
//! newsletter campaign they send. Include it with
//! `#[path = "support/sink.rs"] mod sink;`.
#![allow(dead_code)] // not every bench uses both

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rebound::store::Store;
use rebound::store::campaigns::{CampaignRecord, NewCampaign};

/// A running `smtp-sink`, killed when dropped.
pub struct Sink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `smtp-sink` (64 connections, a 256-message backlog), its output in `log`, and
/// waits until it accepts connections.
pub fn start_sink(log: &Path) -> Sink {
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

/// A SQLite store in `dir` with the benches' newsletter (text + HTML) queued to `n`
/// recipients `user{i}@example.com`.
pub async fn newsletter(dir: &Path, n: usize) -> (Store, CampaignRecord) {
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
    (store, c)
}

//! `POST /classify` throughput and latency of a running `rebound serve`, with no policy and
//! with a chain of three, driven by `wrk` (Debian package `wrk`) over loopback.
//!
//! `cargo bench --bench serve`; needs the guests (`make guests`) and `wrk`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const DURATION: &str = "10s";

fn guest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/guests/wasm32-wasip2/release/{name}.wasm"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, policies: &[&str], port: u16) -> Server {
    let mut config = String::from(
        "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n[policy_limits]\ncache_dir = \"cache\"\n",
    );
    for p in policies {
        config.push_str(&format!(
            "[[policy]]\nname = \"{}\"\npath = \"{}\"\n",
            p.replace('_', "-"),
            guest(p).display()
        ));
    }
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir)
        .args([
            "serve",
            "--config",
            "rebound.toml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("REBOUND_API_TOKEN", TOKEN)
        .env("REBOUND_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rebound serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rebound serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

/// Runs wrk and returns (requests/s, p50 ms, p99 ms, non-2xx).
fn wrk(port: u16, script: &Path) -> (f64, f64, f64, u64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d", DURATION, "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/classify"))
        .output()
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let ms = |s: &str| -> f64 {
        let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        rps,
        field("50%").map_or(f64::NAN, ms),
        field("99%").map_or(f64::NAN, ms),
        non2xx,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/01-postfix-dsn-two-recipients.eml");
    let body = std::fs::read_to_string(&sample).expect("reading the sample");
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\nwrk.body = {}\n",
            serde_json::to_string(&body).unwrap()
        ),
    )
    .unwrap();
    println!(
        "POST /classify, wrk -t2 -c16 -d{DURATION}, message {} bytes",
        body.len()
    );
    let mut results = Vec::new();
    for (label, policies) in [
        ("0 policies", &[][..]),
        (
            "3 policies",
            &["invalid_recipient", "protected_domains", "verizon_mms"][..],
        ),
    ] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let _server = start(sub.path(), policies, port);
        let (rps, p50, p99, errors) = wrk(port, &script);
        println!(
            "{label:>12}: {rps:>8.0} req/s   p50 {p50:>6.2} ms   p99 {p99:>6.2} ms   non-2xx {errors}"
        );
        results.push(rps);
    }
    if let [zero, three] = results[..] {
        println!("3-policy throughput / 0-policy: {:.2}", three / zero);
    }
}

//! The test SMTP server (`tests/support/smtp_server.py`, aiosmtpd) for one test: started
//! on 127.0.0.1 with a random port, told which recipients to reject, defer or throttle,
//! and read back afterwards (accepted messages with server-side timestamps, refusals).
//! Stopped when dropped.
//!
//! Include it from a test file with `#[path = "support/smtp.rs"] mod smtp;`.
//!
//! Needs a Python with `aiosmtpd` 1.4: [`python`] is `REBOUND_PYTHON` (`make test` sets it
//! to the virtual environment `make test-deps` makes in `target/test-venv`), else that
//! environment's interpreter when it exists, else `python3`. A test that cannot start the
//! server fails with the reason; with `REBOUND_SKIP_SMTP=1` [`skip`] reports the test as
//! skipped instead (`support/skip.rs`: visible, and a failure under `CI=true`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "skip.rs"]
mod skip;

/// Should SMTP tests be skipped (`REBOUND_SKIP_SMTP`)? When so, the calling test is
/// reported as skipped.
pub fn skip() -> bool {
    if std::env::var_os("REBOUND_SKIP_SMTP").is_some() {
        skip::skip_current("REBOUND_SKIP_SMTP is set");
        return true;
    }
    false
}

/// The interpreter that runs the test server: `REBOUND_PYTHON`, else
/// `target/test-venv/bin/python` when `make test-deps` made it, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("REBOUND_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// One accepted message.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    /// `MAIL FROM`.
    pub mail_from: String,
    /// `RCPT TO`s.
    pub rcpt_tos: Vec<String>,
    /// When MAIL arrived (Unix seconds).
    pub mail_ts: f64,
    /// When the message was complete (Unix seconds).
    pub data_ts: f64,
    /// Size in bytes.
    pub size: u64,
    /// The Message-ID header (with angle brackets).
    pub message_id: Option<String>,
    /// File name under `msgs/`.
    pub file: String,
}

/// One refusal (or MAIL command) the server logged.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServerEvent {
    /// The command (MAIL, RCPT, DATA, AUTH).
    pub cmd: String,
    /// Its argument.
    pub arg: String,
    /// The reply code.
    pub code: u16,
    /// When (Unix seconds).
    pub ts: f64,
}

/// A running test SMTP server.
pub struct SmtpServer {
    child: Child,
    dir: tempfile::TempDir,
    /// The port on 127.0.0.1.
    pub port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py")
}

impl SmtpServer {
    /// Starts a server with this behaviour (see the script's docstring), e.g.
    /// `json!({"reject": ["a@example.com"], "throttle": {"every": 7, "code": 421}})`.
    ///
    /// # Panics
    /// When it does not come up within 20 seconds.
    pub fn start(behaviour: serde_json::Value) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let bfile = dir.path().join("behaviour.json");
        std::fs::write(&bfile, behaviour.to_string()).expect("writing behaviour");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let python = python();
        let child = Command::new(&python)
            .arg(script())
            .arg("--dir")
            .arg(dir.path())
            .arg("--behaviour")
            .arg(&bfile)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} tests/support/smtp_server.py: {e} (`make test-deps` makes the \
                     Python environment; or set REBOUND_PYTHON)",
                    python.display()
                )
            });
        let mut server = SmtpServer {
            child,
            dir,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let port_file = server.dir.path().join("port");
        loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                server.port = p;
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the test SMTP server ({}) exited ({status}): {}\n(it needs aiosmtpd 1.4: \
                     `make test-deps` installs it in target/test-venv; or set REBOUND_PYTHON)",
                    python.display(),
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the test SMTP server did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if behaviour.get("implicit_tls").is_none() {
            server.wait_for_greeting(deadline);
        }
        server
    }

    fn wait_for_greeting(&self, deadline: Instant) {
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("220") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no 220 greeting from the test SMTP server: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The directory the server writes into.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn jsonl<T: serde::de::DeserializeOwned>(&self, name: &str) -> Vec<T> {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The accepted messages so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.jsonl("messages.jsonl")
    }

    /// How many messages each recipient got so far.
    #[allow(dead_code)] // not every test file counts deliveries
    pub fn deliveries(&self) -> std::collections::BTreeMap<String, usize> {
        let mut per = std::collections::BTreeMap::new();
        for r in self.received() {
            for to in r.rcpt_tos {
                *per.entry(to).or_insert(0) += 1;
            }
        }
        per
    }

    /// The refusals (and MAIL commands) so far.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.jsonl("events.jsonl")
    }

    /// When each `MAIL` command arrived (accepted or not), in seconds.
    pub fn mail_times(&self) -> Vec<f64> {
        self.events()
            .iter()
            .filter(|e| e.cmd == "MAIL")
            .map(|e| e.ts)
            .collect()
    }

    /// The bytes of an accepted message.
    pub fn message(&self, r: &Received) -> Vec<u8> {
        std::fs::read(self.dir.path().join("msgs").join(&r.file)).unwrap_or_default()
    }

    /// Waits until at least `n` messages were accepted.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.received().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A private CA and a server certificate for `localhost` and 127.0.0.1, made with
/// `openssl` in `dir`.
pub struct Certs {
    /// The CA certificate (PEM): the trust root clients need.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

/// Makes [`Certs`] in `dir`.
///
/// # Panics
/// When `openssl` fails.
pub fn make_certs(dir: &Path) -> Certs {
    let p = |name: &str| dir.join(name);
    std::fs::write(
        p("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        ["req", "-x509"]
            .iter()
            .chain(&ec)
            .map(|s| s.to_string())
            .chain(
                ["-days", "2", "-subj", "/CN=rebound smtp test CA", "-keyout"]
                    .iter()
                    .map(|s| s.to_string()),
            )
            .chain([
                p("ca.key").display().to_string(),
                "-out".into(),
                p("ca.pem").display().to_string(),
            ])
            .collect(),
        ["req"]
            .iter()
            .chain(&ec)
            .map(|s| s.to_string())
            .chain(
                ["-subj", "/CN=localhost", "-keyout"]
                    .iter()
                    .map(|s| s.to_string()),
            )
            .chain([
                p("server.key").display().to_string(),
                "-out".into(),
                p("server.csr").display().to_string(),
            ])
            .collect(),
        ["x509", "-req", "-days", "2", "-set_serial", "2", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                p("server.csr").display().to_string(),
                "-CA".into(),
                p("ca.pem").display().to_string(),
            ])
            .chain([
                "-CAkey".into(),
                p("ca.key").display().to_string(),
                "-extfile".into(),
            ])
            .chain([
                p("server.ext").display().to_string(),
                "-out".into(),
                p("server.pem").display().to_string(),
            ])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Certs {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The most timestamps that fall in any half-open window `[t, t + window)`.
pub fn max_in_window(times: &[f64], window: f64) -> usize {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    let mut best = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end] - t[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

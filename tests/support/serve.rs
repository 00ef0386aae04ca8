//! A `rebound serve` process for one test, and a small HTTP/1.1 client to talk to it.
//! Include it with `#[path = "support/serve.rs"] mod serve;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The token every test server is started with.
pub const TOKEN: &str = "test-token-0123456789";

/// A running `rebound serve`; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: String,
    /// Its working directory (config, store, data dir, log).
    pub dir: PathBuf,
}

/// A free port on 127.0.0.1 (bind to 0, read the port, let it go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Server {
    /// Writes `config` to `dir/rebound.toml` and starts the server there, with [`TOKEN`].
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with(dir, config, env, Some(TOKEN))
    }

    /// [`Server::start`] without a token: open on loopback, the dashboard without a login.
    pub fn start_open(dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with(dir, config, env, None)
    }

    fn start_with(dir: &Path, config: &str, env: &[(&str, &str)], token: Option<&str>) -> Server {
        std::fs::write(dir.join("rebound.toml"), config).expect("writing the config");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("serve.log")).expect("creating the log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
        cmd.current_dir(dir)
            .args(["serve", "--config", "rebound.toml", "--listen", &addr])
            .env("REBOUND_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        match token {
            Some(t) => cmd.env("REBOUND_API_TOKEN", t),
            None => cmd.env_remove("REBOUND_API_TOKEN"),
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting rebound serve");
        let server = Server {
            child: Some(child),
            addr,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = server.try_request("GET", "/healthz", None, &[])
                && r.status == 200
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rebound serve did not come up; log:\n{}", server.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rebound serve did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request with the right token.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let auth = format!("Bearer {TOKEN}");
        self.try_request(method, path, body, &[("Authorization", &auth)])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()))
    }

    /// A request with the right token and a JSON body (`Content-Type: application/json`).
    pub fn request_json(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let auth = format!("Bearer {TOKEN}");
        self.try_request(
            method,
            path,
            Some(body),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()))
    }

    /// A request with the given headers (and no token unless given).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        request(&self.addr, method, path, body, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or(&[]);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // The address as Host, unless the caller gives its own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer before it has read the whole body (a 413 for a body that is too
    // large) and close: the answer is read even when the rest of the body cannot go out.
    let sent = stream.write_all(body);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        sent?;
        read?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

//! A headless Chromium for one test, driven through chromedriver with the W3C WebDriver
//! JSON protocol over plain HTTP/1.1 (a few lines below: the driver is on loopback, so no
//! WebDriver crate and its HTTP/TLS stack are built for a dozen commands). Include it
//! with `#[path = "support/browser.rs"] mod browser;` next to `support/serve.rs` and
//! `support/skip.rs`.
//!
//! [`Browser::start`] reports the test as skipped (`skip.rs`: a failure under `CI=true`)
//! when chromedriver or chromium is not installed (`make test-deps` installs Debian's
//! `chromium` and `chromium-driver`); `REBOUND_CHROMEDRIVER` and `REBOUND_CHROMIUM` point
//! at other binaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve;
use crate::skip;

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or reports the skip and
    /// returns `None`.
    pub fn start() -> Option<Browser> {
        let Some(driver) = find_binary(
            "REBOUND_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        ) else {
            skip::skip_current(
                "chromedriver is not installed (Debian: chromium-driver; `make test-deps`)",
            );
            return None;
        };
        let Some(chromium) = find_binary(
            "REBOUND_CHROMIUM",
            &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
        ) else {
            skip::skip_current("chromium is not installed (`make test-deps`)");
            return None;
        };
        let port = serve::free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let addr = format!("127.0.0.1:{port}");
        let mut browser = Browser {
            driver: child,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, v)) = http(&browser.addr, "GET", "/status", None)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("rebound-chromium-{port}"));
        let session = browser.command(
            "POST",
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,1000",
                        "--no-first-run", "--disable-extensions",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}}),
        );
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        Some(browser)
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = (method == "POST").then(|| body.to_string().into_bytes());
        let (status, v) = http(&self.addr, method, path, body.as_deref())?;
        if status != 200 {
            return Err(format!("{status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        self.command("POST", &self.session_path("/url"), json!({ "url": url }));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.command("GET", &self.session_path("/url"), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.command("GET", &self.session_path("/title"), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.command(
            "POST",
            &self.session_path("/elements"),
            json!({ "using": "css selector", "value": css }),
        )
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The first element matching a CSS selector, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An element's rendered text.
    pub fn text(&self, e: &Element) -> String {
        self.command(
            "GET",
            &self.session_path(&format!("/element/{}/text", e.0)),
            Value::Null,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// An element's attribute (`None` when it has none).
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.command(
            "GET",
            &self.session_path(&format!("/element/{}/attribute/{name}", e.0)),
            Value::Null,
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.command(
            "POST",
            &self.session_path(&format!("/element/{}/click", e.0)),
            json!({}),
        );
    }

    /// Types into an element (for a file input: the file's absolute path).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.command(
            "POST",
            &self.session_path(&format!("/element/{}/value", e.0)),
            json!({ "text": text }),
        );
    }

    /// Runs a script in the page (`return …` gives the value).
    pub fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.try_command("GET", &self.session_path("/source"), Value::Null)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The browser's cookies for the current page (WebDriver cookie objects).
    pub fn cookies(&self) -> Vec<Value> {
        self.command("GET", &self.session_path("/cookie"), Value::Null)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits up to 10 s for `check` to hold.
    pub fn wait_until(&self, what: &str, mut check: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG screenshot of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.command("GET", &self.session_path("/screenshot"), Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the screenshot directory");
        }
        std::fs::write(path, bytes).expect("writing the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_command("DELETE", &self.session_path(""), Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One request to the driver; its status and JSON body. chromedriver answers
/// `Connection: close` but keeps the connection open, so the body is read by its
/// `Content-Length`.
fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Value), String> {
    let e = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(e)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(e)?;
    let body = body.unwrap_or(&[]);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(e)?;
    stream.write_all(body).map_err(e)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(e)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(e)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut data = Vec::new();
    match length {
        Some(n) => {
            data.resize(n, 0);
            reader.read_exact(&mut data).map_err(e)?;
        }
        None => {
            reader.read_to_end(&mut data).map_err(e)?;
        }
    }
    let v = serde_json::from_slice(&data)
        .map_err(|err| format!("{err}: {}", String::from_utf8_lossy(&data)))?;
    Ok((status, v))
}

//! Set-up shared by the tests that run several `rebound send` processes on one store:
//! the config (on a SQLite file in the test's directory, or on any store URL, e.g. a
//! PostgreSQL database of `support/postgres.rs`), a campaign file with its list, a sender
//! process with its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The config for senders through the SMTP server on `port`, on a SQLite store in `dir`.
#[allow(dead_code)] // not every test file is on SQLite alone
pub fn write_config(dir: &Path, port: u16, extra: &str) {
    write_config_on(dir, &sqlite_url(dir), port, extra);
}

/// The URL of the SQLite store [`write_config`] puts in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/rebound.db", dir.display())
}

/// [`write_config`] on the store at `store` (any `[store] url`).
pub fn write_config_on(dir: &Path, store: &str, port: u16, extra: &str) {
    let config = format!(
        "[store]\nurl = \"{store}\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\nworkers = 4\n{extra}\n"
    );
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
}

/// Creates (migrates) the store of `dir`'s config with `rebound campaigns`, so that the
/// senders started next do not all start by migrating a new store at once.
#[allow(dead_code)] // not every test file starts from an empty store
pub fn create_store(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(dir.join("rebound.toml"))
        .arg("campaigns")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn write_campaign(dir: &Path, name: &str, prefix: &str, n: usize) -> PathBuf {
    let list: Vec<String> = (0..n).map(|i| format!("{prefix}{i}@example.com")).collect();
    std::fs::write(dir.join(format!("{name}.txt")), list.join("\n")).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nsubject = \"Hello\"\ntext = \"Hi.\"\n[recipients]\nfile = \"{name}.txt\"\n"
        ),
    )
    .unwrap();
    path
}

pub fn spawn_send(dir: &Path, campaign: &Path, extra: &[&str], log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(dir.join("rebound.toml"))
        .args(["send", "--quiet"])
        .args(extra)
        .arg("--campaign")
        .arg(campaign)
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// How many messages a `rebound send` says it sent, from its log's last line
/// (`campaign 1 "name": sent N, bounced …`).
#[allow(dead_code)]
pub fn sent_in(log: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.starts_with("campaign "))?;
    let n = line.split(": sent ").nth(1)?.split(',').next()?;
    n.trim().parse().ok()
}

#[allow(dead_code)] // not every test file waits for one sender alone
pub fn wait(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rebound send did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

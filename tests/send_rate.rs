//! Rate limits against the real test SMTP server: with several limits at once, four
//! workers and a server that throttles (454) part of the time, no window of any limit
//! ever holds more messages than the limit, measured by the server's own clock.

#[path = "support/smtp.rs"]
mod smtp;

use std::path::Path;
use std::process::Command;

use serde_json::json;

fn setup(dir: &Path, port: u16, n: usize, smtp_extra: &str) -> std::path::PathBuf {
    let config = format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n{smtp_extra}\n",
        dir.display()
    );
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    let list: Vec<String> = (0..n).map(|i| format!("rate{i}@example.com")).collect();
    std::fs::write(dir.join("list.txt"), list.join("\n")).unwrap();
    let campaign = dir.join("campaign.toml");
    std::fs::write(
        &campaign,
        "name = \"rate\"\nsubject = \"Rate\"\ntext = \"Counting.\"\n[recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    campaign
}

#[test]
fn send_never_exceeds_any_limit_in_any_window() {
    if smtp::skip() {
        return;
    }
    let server =
        smtp::SmtpServer::start(json!({"throttle": {"every": 10, "code": 454, "first": 60}}));
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let campaign = setup(
        dir.path(),
        server.port,
        n,
        "workers = 4\nthrottle_delay = \"300ms\"\n\
         [[smtp.rate_limit]]\nmessages = 30\nper = \"1s\"\n\
         [[smtp.rate_limit]]\nmessages = 100\nper = \"4s\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(dir.path().join("rebound.toml"))
        .args(["send", "--quiet", "--campaign", campaign.to_str().unwrap()])
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = server.received();
    assert_eq!(received.len(), n);
    // Every MAIL the server saw (accepted or throttled) counts against the limit.
    let mails = server.mail_times();
    let throttled = server.events().iter().filter(|e| e.code == 454).count();
    assert!(throttled >= 3, "{throttled}");
    let done: Vec<f64> = received.iter().map(|r| r.data_ts).collect();
    for (times, what) in [(&mails, "MAIL"), (&done, "end of DATA")] {
        let one = smtp::max_in_window(times, 1.0);
        let four = smtp::max_in_window(times, 4.0);
        eprintln!("{what}: at most {one} in 1 s, {four} in 4 s");
        assert!(one <= 30, "{what}: {one} in one second");
        assert!(four <= 100, "{what}: {four} in four seconds");
    }
    // And it does run at the binding limit (100 per 4 s), not far below it.
    assert!(smtp::max_in_window(&mails, 4.0) >= 90, "too slow");
}

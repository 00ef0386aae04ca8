//! Detector throughput: `detect` over the whole labelled corpus against mail-parser's
//! parse alone (same messages, same run, one thread), and the cost of `detect` as a
//! message grows (100 KB, 1 MB and 10 MB attachments).
//!
//! `cargo bench --bench detector` (or `make bench`). The corpus is found through
//! `REBOUND_CORPUS` (default `../shared/corpus/sisimai`); without it only the size part runs.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use rebound::detector::detect;

/// Runs `f` over all messages repeatedly for at least `min` and returns the best
/// messages-per-second of the passes (the least disturbed by other work on the machine).
fn rate<F: FnMut(&[u8])>(messages: &[Vec<u8>], min: Duration, mut f: F) -> f64 {
    let start = Instant::now();
    let mut best = f64::MAX;
    let mut passes = 0;
    while start.elapsed() < min || passes < 3 {
        let t = Instant::now();
        for m in messages {
            f(m);
        }
        best = best.min(t.elapsed().as_secs_f64());
        passes += 1;
    }
    messages.len() as f64 / best
}

fn message_with_attachment(size: usize) -> Vec<u8> {
    let mut m = String::new();
    m.push_str("From: MAILER-DAEMON@mx.example.net\nTo: bounces+t1@example.com\nSubject: Undelivered Mail Returned to Sender\n");
    m.push_str("MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\n\n");
    m.push_str("--b1\nContent-Type: text/plain\n\n<a@example.net>: host mx.example.net said: 550 5.1.1 User unknown (in reply to RCPT TO command)\n\n");
    m.push_str("--b1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n\n");
    m.push_str("--b1\nContent-Type: message/rfc822\n\nFrom: News <news@example.com>\nTo: a@example.net\nMessage-ID: <big@example.com>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b2\"\n\n");
    m.push_str("--b2\nContent-Type: text/plain\n\nSee the attachment.\n--b2\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n");
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n";
    while m.len() < size {
        m.push_str(line);
    }
    m.push_str("--b2--\n\n--b1--\n");
    m.into_bytes()
}

fn main() {
    let min = Duration::from_secs(3);
    let parser = MessageParser::default();
    let dir = corpus::dir();
    let messages: Vec<Vec<u8>> = corpus::eml_files(&dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    if messages.is_empty() {
        println!(
            "corpus: not found at {} (set REBOUND_CORPUS); skipping the corpus part",
            dir.display()
        );
    } else {
        let bytes: usize = messages.iter().map(Vec::len).sum();
        let parse = rate(&messages, min, |m| {
            black_box(parser.parse(black_box(m)));
        });
        let detect_rate = rate(&messages, min, |m| {
            black_box(detect(black_box(m)));
        });
        println!(
            "corpus: {} messages, {:.1} MB",
            messages.len(),
            bytes as f64 / 1e6
        );
        println!("  mail-parser parse only  {:>9.0} messages/s", parse);
        println!("  detect                  {:>9.0} messages/s", detect_rate);
        println!("  detect / parse time     {:>9.2}x", parse / detect_rate);
    }
    if std::env::var("REBOUND_BENCH_ONLY").is_ok_and(|v| v == "corpus") {
        return;
    }
    println!("size (one DSN whose returned message carries a base64 attachment):");
    let mut per_mb = Vec::new();
    for size in [100_000usize, 1_000_000, 10_000_000] {
        let m = vec![message_with_attachment(size)];
        let d = detect(&m[0]);
        assert_eq!(
            d.verdict.recipients.len(),
            1,
            "the generated bounce must be read"
        );
        let parse = rate(&m, min / 3, |m| {
            black_box(parser.parse(black_box(m)));
        });
        let det = rate(&m, min / 3, |m| {
            black_box(detect(black_box(m)));
        });
        let ms = 1000.0 / det;
        let mb = m[0].len() as f64 / 1e6;
        per_mb.push(ms / mb);
        println!(
            "  {:>6.1} MB  detect {:>9.3} ms ({:>6.1} ms/MB)  parse only {:>9.3} ms  ratio {:.2}x",
            mb,
            ms,
            ms / mb,
            1000.0 / parse,
            parse / det
        );
    }
    if let (Some(first), Some(last)) = (per_mb.first(), per_mb.last()) {
        println!(
            "  cost per MB, 10 MB vs 100 KB: {:.2}x (1.0 = linear)",
            last / first
        );
    }
}

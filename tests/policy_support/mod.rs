//! Shared helpers of the policy tests: where `make guests` puts the components, and small
//! messages and detections to feed them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

#[path = "../support/skip.rs"]
pub(crate) mod skip;

use rebound::detector::{BounceReport, DeliveryReport, Detection};
use rebound::policy::{ModuleOptions, PolicyEngine, PolicyModule};
use rebound::verdict::{BUILTIN, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

/// A plain-text note from a gateway: the built-in detector cannot be sure; the
/// invalid-recipient policy is.
pub const INVALID_RECIPIENT: &[u8] = b"From: MAILER-DAEMON@gateway.example.net\r\n\
To: bounces@example.com\r\n\
Subject: Undeliverable mail\r\n\
Message-ID: <note-1@gateway.example.net>\r\n\
\r\n\
Your message could not be delivered.\r\n\
Invalid recipient: <jane.doe@example.org>\r\n";

/// Where `make guests` leaves the `.wasm` files.
pub fn guest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/guests/wasm32-wasip2/release")
}

/// The path of a built guest (`invalid-recipient` → `invalid_recipient.wasm`), or `None`
/// when it is not built: the test is reported as skipped (`support/skip.rs`), which fails
/// it under `CI=true`.
pub fn guest(name: &str) -> Option<PathBuf> {
    let path = guest_dir().join(format!("{}.wasm", name.replace('-', "_")));
    if path.exists() {
        return Some(path);
    }
    skip::skip_current(&format!(
        "guest component {} is missing: run `make guests` first",
        path.display()
    ));
    None
}

/// Returns from the test early when the guest is not built (outside CI).
#[macro_export]
macro_rules! guest_or_skip {
    ($name:expr) => {
        match $crate::policy_support::guest($name) {
            Some(p) => p,
            None => return,
        }
    };
}

pub fn engine() -> &'static PolicyEngine {
    PolicyEngine::shared().expect("policy engine")
}

/// Default options, with room in the time cap for CPython on a busy test machine (its
/// per-call cost is measured by `make bench`, not here).
pub fn example_options(name: &str) -> ModuleOptions {
    ModuleOptions {
        timeout: if name.ends_with("-py") {
            std::time::Duration::from_secs(2)
        } else {
            ModuleOptions::default().timeout
        },
        ..ModuleOptions::default()
    }
}

/// A module from a built guest, with options.
pub fn module(name: &str, path: &std::path::Path, options: ModuleOptions) -> Arc<PolicyModule> {
    let bytes = std::fs::read(path).expect("reading guest");
    Arc::new(PolicyModule::compile(engine(), name, &bytes, options).expect("compiling guest"))
}

/// Options with a config table.
pub fn with_config(pairs: &[(&str, &str)]) -> ModuleOptions {
    let mut o = ModuleOptions::default();
    for (k, v) in pairs {
        o.config.insert((*k).into(), (*v).into());
    }
    o
}

/// A detection made by hand: a message with this text, the built-in verdict given.
pub fn detection(text: &str, verdict: Verdict) -> Detection {
    Detection {
        report: BounceReport {
            headers: vec![
                ("From".into(), "MAILER-DAEMON@mx.example.net".into()),
                (
                    "Subject".into(),
                    "Undelivered Mail Returned to Sender".into(),
                ),
            ],
            subject: Some("Undelivered Mail Returned to Sender".into()),
            from: Some("MAILER-DAEMON@mx.example.net".into()),
            text: text.into(),
            reports: Vec::new(),
            original: None,
            parser: None,
            error: None,
        },
        verdict,
    }
}

/// A detection with one DSN report block.
pub fn dsn_detection(
    recipient: &str,
    status: &str,
    diagnostic: &str,
    verdict: Verdict,
) -> Detection {
    let mut d = detection(diagnostic, verdict);
    d.report.reports.push(DeliveryReport {
        final_recipient: Some(recipient.into()),
        action: Some("failed".into()),
        status: Some(status.into()),
        diagnostic_code: Some(diagnostic.into()),
        ..DeliveryReport::default()
    });
    d.report.parser = Some("dsn".into());
    d
}

pub fn other() -> Verdict {
    Verdict {
        kind: MessageKind::Other,
        recipients: Vec::new(),
        decided_by: BUILTIN.into(),
    }
}

pub fn bounce(address: &str, reason: Reason, status: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![RecipientVerdict {
            address: address.into(),
            bounce: BounceClass::derive(MessageKind::Bounce, reason, Some(status), Some("failed")),
            status: Some(status.into()),
            reason,
            blame: rebound::verdict::Blame::of(reason),
            diagnostic: None,
            action: Some("failed".into()),
            remote_mta: None,
            feedback_type: None,
            aliases: Vec::new(),
        }],
        decided_by: BUILTIN.into(),
    }
}

/// The raw bytes that go with a hand-made detection.
pub const RAW: &[u8] = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nsee text\r\n";
/// A raw message the hostile guests treat as harmless.
pub const BEHAVE: &[u8] = b"From: a@example.net\r\nSubject: behave\r\n\r\nbehave\r\n";

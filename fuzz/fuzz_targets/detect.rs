//! Fuzz target: `detect` must never panic and never fail, whatever the bytes.
//! The detector and verdict sources are compiled in directly (see Cargo.toml).
//!
//! One panic is expected and tolerated: mail-parser 0.11.2 has a `debug_assert!` on
//! malformed multipart nesting (`parsers/message.rs`, "Invalid part ID"), which fuzz builds
//! enable. `detect` catches it and re-reads the message as plain text; the hook below lets
//! exactly that panic through and turns every other panic into a crash.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../src/verdict.rs"]
mod verdict;

#[allow(dead_code, unreachable_pub)]
#[path = "../../src/detector/mod.rs"]
mod detector;

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream_assert = info.location().is_some_and(|l| {
                l.file()
                    .contains("mail-parser-0.11.2/src/parsers/message.rs")
            });
            if !upstream_assert {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let d = detector::detect(data);
    // A hard class needs a permanent (5.x.x) status.
    for r in &d.verdict.recipients {
        if r.bounce == Some(verdict::BounceClass::Hard) {
            assert!(r.status.as_deref().is_some_and(|s| s.starts_with('5')));
        }
    }
});

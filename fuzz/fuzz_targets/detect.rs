//! Fuzz target: `detect` must never panic and never fail, whatever the bytes.
//! The detector and verdict sources are compiled in directly (see Cargo.toml).
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../src/verdict.rs"]
mod verdict;

#[allow(dead_code, unreachable_pub)]
#[path = "../../src/detector/mod.rs"]
mod detector;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = detector::detect(data);
    // A hard class needs a permanent (5.x.x) status.
    for r in &d.verdict.recipients {
        if r.bounce == Some(verdict::BounceClass::Hard) {
            assert!(r.status.as_deref().is_some_and(|s| s.starts_with('5')));
        }
    }
    // A panic caught inside detect is reported as this error: make it a crash here.
    assert_ne!(d.report.error.as_deref(), Some("internal error while reading the message"));
});

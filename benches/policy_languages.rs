//! The invalid-recipient policy in Rust and in Python (componentize-py), in one run: the
//! component's size, its load time without and with the precompiled cache, the cost per
//! message of a chain of it on top of the built-in detector, one call with a reused
//! instance and with a fresh one, and the least memory cap an instance runs under.
//!
//! `cargo bench --bench policy_languages` (or `make bench`, which builds the guests
//! first). Messages: the Sisimai corpus (`REBOUND_CORPUS`), else a small built-in set.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rebound::detector::{Detection, detect};
use rebound::policy::{ModuleOptions, PolicyChain, PolicyEngine, PolicyModule};

const ROUNDS: usize = 11;

fn corpus() -> Vec<Vec<u8>> {
    let mut out = corpus::bsd_messages();
    if out.is_empty() {
        eprintln!("corpus not found: using a built-in message set");
        for i in 0..50 {
            out.push(
                format!(
                    "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\r\n\
                     550 5.1.1 <user{i}@example.org>: Invalid recipient\r\n"
                )
                .into_bytes(),
            );
        }
    }
    out
}

fn engine() -> &'static PolicyEngine {
    PolicyEngine::shared().expect("policy engine")
}

fn bytes_of(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests/wasm32-wasip2/release")
        .join(file);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make guests guests-python`)", path.display()))
}

/// Generous time cap: the bench measures the cost, it does not enforce it.
fn options() -> ModuleOptions {
    ModuleOptions {
        timeout: Duration::from_secs(5),
        ..ModuleOptions::default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

struct Language {
    name: &'static str,
    bytes: Vec<u8>,
}

/// Fastest of `ROUNDS` passes over `sample`, per message.
fn per_message(sample: &[(Vec<u8>, Detection)], run: impl Fn(&[u8], &Detection)) -> Duration {
    for (raw, d) in sample {
        run(raw, d);
    }
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for (raw, d) in sample {
                run(raw, d);
            }
            t.elapsed() / sample.len() as u32
        })
        .min()
        .unwrap_or_default()
}

/// The least memory cap (in MiB) under which an instance evaluates the sample.
fn least_memory(bytes: &[u8], sample: &[(Vec<u8>, Detection)]) -> u64 {
    let works = |mib: u64| {
        let o = ModuleOptions {
            max_memory: mib << 20,
            max_failures: 0,
            ..options()
        };
        let Ok(m) = PolicyModule::compile(engine(), "probe", bytes, o) else {
            return false;
        };
        let chain = PolicyChain::new(vec![std::sync::Arc::new(m)]);
        sample.iter().take(20).all(|(raw, d)| {
            chain
                .run_detailed(raw, d)
                .is_ok_and(|r| !matches!(r.steps[0].outcome, rebound::policy::Outcome::Failed(_)))
        })
    };
    let (mut lo, mut hi) = (1u64, 256u64);
    if !works(hi) {
        return u64::MAX;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if works(mid) { hi = mid } else { lo = mid + 1 }
    }
    lo
}

fn main() {
    let msgs = corpus();
    let sample: Vec<(Vec<u8>, Detection)> = msgs.iter().map(|m| (m.clone(), detect(m))).collect();
    let small: Vec<(Vec<u8>, Detection)> = sample.iter().take(100).cloned().collect();
    let languages = [
        Language {
            name: "Rust",
            bytes: bytes_of("invalid_recipient.wasm"),
        },
        Language {
            name: "Python",
            bytes: bytes_of("invalid_recipient_py.wasm"),
        },
    ];
    let builtin = per_message(&sample, |raw, _| {
        black_box(detect(raw));
    });

    println!(
        "invalid-recipient in Rust and in Python: {} corpus messages, fastest of {ROUNDS} rounds",
        sample.len()
    );
    println!();
    println!(
        "| | size | load, no cache | load, cache miss (compile + write) | load, cache hit | per message: detector + chain of it | × detector alone | one call, reused instance | one call, fresh instance | least memory cap |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for lang in &languages {
        let t = Instant::now();
        let module = PolicyModule::compile(engine(), "invalid-recipient", &lang.bytes, options())
            .expect("compile");
        let no_cache = t.elapsed();
        drop(module);

        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let cached = || ModuleOptions {
            cache_dir: Some(cache.clone()),
            cache_key_file: Some(dir.path().join("cache-key")),
            ..options()
        };
        let t = Instant::now();
        drop(PolicyModule::compile(engine(), "invalid-recipient", &lang.bytes, cached()).unwrap());
        let miss = t.elapsed();
        let t = Instant::now();
        let module =
            PolicyModule::compile(engine(), "invalid-recipient", &lang.bytes, cached()).unwrap();
        let hit = t.elapsed();

        let chain = PolicyChain::new(vec![std::sync::Arc::new(module)]);
        let with_chain = per_message(&sample, |raw, _| {
            let d = detect(raw);
            black_box(chain.run(raw, &d).expect("chain"));
        });
        let empty = PolicyChain::new(Vec::new());
        let baseline = per_message(&small, |raw, d| {
            black_box(empty.run(raw, d).expect("chain"));
        });
        let reused = per_message(&small, |raw, d| {
            black_box(chain.run(raw, d).expect("chain"));
        });
        let fresh_chain = PolicyChain::new(vec![std::sync::Arc::new(
            PolicyModule::compile(
                engine(),
                "invalid-recipient",
                &lang.bytes,
                ModuleOptions {
                    recycle_after: 1,
                    ..cached()
                },
            )
            .unwrap(),
        )]);
        let fresh_sample: Vec<_> = small.iter().take(20).cloned().collect();
        let fresh = per_message(&fresh_sample, |raw, d| {
            black_box(fresh_chain.run(raw, d).expect("chain"));
        });
        let memory = least_memory(&lang.bytes, &sample);
        println!(
            "| {} | {:.1} MB | {} ms | {} ms | {} ms | {} µs | {:.2} | {} µs | {} µs | {} MiB |",
            lang.name,
            lang.bytes.len() as f64 / 1e6,
            ms(no_cache),
            ms(miss),
            ms(hit),
            us(with_chain),
            with_chain.as_secs_f64() / builtin.as_secs_f64(),
            us(reused.saturating_sub(baseline)),
            us(fresh.saturating_sub(baseline)),
            memory
        );
    }
    println!();
    println!("built-in detector alone: {} µs per message", us(builtin));
}

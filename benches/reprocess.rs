//! Reprocessing rate: an archive of N messages (default 100 000: the Sisimai corpus
//! cycled, each cycle's recipients made its own, as the poller would have recorded them,
//! each with its events) in a SQLite
//! file, then `reprocess::dry_run` over all of it with no policy and with the three
//! example policies (invalid-recipient, verizon-mms, protected-domains), then
//! `reprocess::apply` with the three twice (the second finds nothing to change), in one run.
//!
//! `cargo bench --bench reprocess` (or `make bench`; the guests come from `make guests`).
//! `REBOUND_BENCH_ARCHIVED=10000` changes N.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rebound::config::RulesConfig;
use rebound::policy::{ModuleOptions, PolicyChain, PolicyEngine, PolicyModule};
use rebound::store::archive::RawMessage;
use rebound::store::{EventContext, Store, Timestamp};

fn module(name: &str, options: ModuleOptions) -> Arc<PolicyModule> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make guests`)", path.display()));
    let engine = PolicyEngine::shared().expect("policy engine");
    Arc::new(PolicyModule::compile(engine, name, &bytes, options).expect("compiling guest"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let n: usize = std::env::var("REBOUND_BENCH_ARCHIVED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let messages = corpus::bsd_messages();
    let mut protected = ModuleOptions::default();
    protected
        .config
        .insert("domains".into(), "example.jp, example.co.jp".into());
    let three = Arc::new(PolicyChain::new(vec![
        module("invalid-recipient", ModuleOptions::default()),
        module("verizon-mms", ModuleOptions::default()),
        module("protected-domains", protected),
    ]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let rules = RulesConfig::default();
        let t = Instant::now();
        // As the poller records them: a group commit of 64 at a time.
        let mut batch = Vec::with_capacity(64);
        for i in 0..n {
            // Each cycle through the corpus bounces other recipients (`user+cK@…`), as a
            // list's mailbox does: the corpus alone names 232 addresses, so 100 000
            // messages would give each of them hundreds of events.
            let cycle = i / messages.len();
            let cycled;
            let raw = match cycle {
                0 => &messages[i],
                k => {
                    let tag = format!("+c{k}@");
                    cycled = messages[i % messages.len()]
                        .iter()
                        .flat_map(|&b| match b {
                            b'@' => tag.as_bytes().to_vec(),
                            b => vec![b],
                        })
                        .collect::<Vec<u8>>();
                    &cycled
                }
            };
            let d = rebound::detector::detect(raw);
            let ctx = EventContext {
                raw: Some(RawMessage::compress(raw).unwrap()),
                ..EventContext::mailbox("bench", format!("u{i}"))
            };
            batch.push((ctx, d.verdict));
            if batch.len() == 64 || i + 1 == n {
                let _ = store.record_verdicts(&batch, &rules).await.unwrap();
                batch.clear();
            }
        }
        let fill = t.elapsed().as_secs_f64();
        let stats = store.archive_stats().await.unwrap();
        assert_eq!(stats.messages as usize, n);
        println!(
            "archive of {n} messages ({} MB stored, {} MB raw) filled in {fill:.0} s",
            stats.stored_bytes / 1_000_000,
            stats.raw_bytes / 1_000_000
        );
        let since = Timestamp(0);
        for (label, chain) in [("no policy", Arc::new(PolicyChain::empty())), ("3 example policies", three.clone())] {
            let t = Instant::now();
            let report = rebound::reprocess::dry_run(&store, &chain, &rules, since)
                .await
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(report.messages as usize, n);
            println!(
                "dry run, {label:<18}: {secs:.1} s, {:.0} msg/s; {} messages would change ({} changes), {} failed",
                n as f64 / secs,
                report.changed,
                report.changes.len(),
                report.failed
            );
        }
        // Applying what the three policies change, then again (nothing left to change).
        for pass in ["apply", "apply again"] {
            let t = Instant::now();
            let report = rebound::reprocess::apply(&store, &three, &rules, since)
                .await
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{pass:<11}, 3 example policies: {secs:.1} s, {:.0} msg/s; {} messages booked again, {} state changes",
                n as f64 / secs,
                report.changed,
                report.state_changes.len()
            );
        }
    });
}

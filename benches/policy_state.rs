//! What a policy's `state` costs, on a SQLite file, in one run (`cargo bench --bench
//! policy_state`, or `make bench`, which builds the guests first):
//!
//! 1. a million keys: how fast they go in, and a read of one key with 1 000 000 keys held
//!    against one with 1 000 held;
//! 2. per message, mailbox-full bounces each to a new address (a new key each), with a
//!    million keys held: the detector + chain alone (`pipeline::judge`) and the whole
//!    ingest with its commit (`Stages::ingest`), for no policy, the stateless
//!    `invalid-recipient` and the stateful `repeated-mailbox-full` (a read and a write per
//!    message);
//! 3. pruning a million expired entries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rebound::pipeline::{self, Stages};
use rebound::policy::{ModuleOptions, PolicyChain, PolicyEngine, PolicyModule};
use rebound::store::policy_state::StateWrite;
use rebound::store::{EventContext, Store, Timestamp};

const POLICY: &str = "repeated-mailbox-full";
const MILLION: usize = 1_000_000;
const MESSAGES: usize = 2_000;

fn module(file: &str, name: &str) -> Arc<PolicyModule> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests/wasm32-wasip2/release")
        .join(file);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make guests`)", path.display()));
    let engine = PolicyEngine::shared().expect("policy engine");
    let mut options = ModuleOptions::default();
    // Room above the million keys held (at the default limit every new key is refused).
    options.state.max_keys = 2 * MILLION as u64;
    Arc::new(PolicyModule::compile(engine, name, &bytes, options).unwrap())
}

/// A final mailbox-full failure (5.2.2) for `user<i>@example.org`.
fn mailbox_full(i: usize) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <full-{i}@mx.example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThe mailbox is full.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; user{i}@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n\
         Diagnostic-Code: smtp; 552 5.2.2 <user{i}@example.org>: mailbox full\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <send-{i}@example.com>\r\n\
         From: news@example.com\r\nTo: user{i}@example.org\r\n\r\n--b--\r\n"
    )
    .into_bytes()
}

fn set(policy: &str, key: String, expires_at: Timestamp) -> StateWrite {
    StateWrite::Set {
        policy: policy.into(),
        key,
        value: "1700000000 <send@example.com>".into(),
        expires_at,
    }
}

async fn fill(store: &Store, policy: &str, n: usize, expires_at: Timestamp) -> f64 {
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(set(
            policy,
            format!("full:filler{i}@example.org"),
            expires_at,
        ));
        if batch.len() == 10_000 {
            store.apply_policy_state(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.apply_policy_state(&batch).await.unwrap();
    t.elapsed().as_secs_f64()
}

/// p50 and p99 of reading random keys of `policy` (which holds `n`), in µs.
async fn reads(store: &Store, policy: &str, n: usize) -> (f64, f64) {
    let now = Timestamp::now();
    let mut times = Vec::with_capacity(5_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("full:filler{}@example.org", x as usize % n);
        let t = Instant::now();
        let got = store.policy_state_get(policy, &key, now).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(got.is_some(), "{key}");
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let later = Timestamp(Timestamp::now().0 + 30 * 86_400_000);

        // 1. A million keys, and reads against a thousand.
        let secs = fill(&store, POLICY, MILLION, later).await;
        println!(
            "state: {MILLION} keys written in {secs:.1} s ({:.0} keys/s, batches of 10 000)",
            MILLION as f64 / secs
        );
        fill(&store, "small", 1_000, later).await;
        assert_eq!(
            store.policy_state_keys(POLICY).await.unwrap(),
            MILLION as u64
        );
        let (small50, small99) = reads(&store, "small", 1_000).await;
        let (big50, big99) = reads(&store, POLICY, MILLION).await;
        println!(
            "state read, one key: 1 000 keys held p50 {small50:.1} µs p99 {small99:.1} µs; \
             1 000 000 held p50 {big50:.1} µs p99 {big99:.1} µs (p50 ratio {:.2})",
            big50 / small50
        );

        // 2. Per message, with the million keys held.
        let chains: [(&str, Arc<PolicyChain>); 3] = [
            ("no policy", Arc::new(PolicyChain::empty())),
            (
                "invalid-recipient (no state)",
                Arc::new(PolicyChain::new(vec![module(
                    "invalid_recipient.wasm",
                    "invalid-recipient",
                )])),
            ),
            (
                "repeated-mailbox-full (state)",
                Arc::new(PolicyChain::new(vec![module(
                    "repeated_mailbox_full.wasm",
                    POLICY,
                )])),
            ),
        ];
        let mut base_judge = 0.0;
        let mut base_ingest = 0.0;
        for (round, (label, chain)) in chains.iter().enumerate() {
            let offset = (round + 1) * 10 * MESSAGES;
            let messages: Vec<Vec<u8>> = (0..MESSAGES).map(|i| mailbox_full(offset + i)).collect();
            // The chain on its own, its state read from (and written to) the store's
            // session but not committed.
            let state = pipeline::state_of(&store);
            let t = Instant::now();
            for raw in &messages {
                let j = pipeline::judge(raw, chain, &state).await.unwrap();
                std::hint::black_box(j);
            }
            let judge = t.elapsed().as_secs_f64() * 1e6 / MESSAGES as f64;
            // The whole ingest, one message per transaction (as IMAP and webhooks do).
            let stages = Stages {
                chain: Arc::new(arc_swap::ArcSwap::new(chain.clone())),
                rules: rebound::config::RulesConfig::default(),
                unsubscribe: None,
                archive: false,
            };
            let messages: Vec<Vec<u8>> = (0..MESSAGES)
                .map(|i| mailbox_full(offset + MESSAGES + i))
                .collect();
            let t = Instant::now();
            for (i, raw) in messages.iter().enumerate() {
                let ctx = EventContext::webhook("bench", format!("{round}-{i}"));
                stages.ingest(&store, ctx, raw).await.unwrap();
            }
            let ingest = t.elapsed().as_secs_f64() * 1e6 / MESSAGES as f64;
            if round == 0 {
                (base_judge, base_ingest) = (judge, ingest);
            }
            println!(
                "per message, {label:<30}: judge {judge:>7.1} µs ({:.2}×), ingest + commit \
                 {ingest:>7.1} µs ({:.2}×)",
                judge / base_judge,
                ingest / base_ingest
            );
        }
        let keys = store.policy_state_keys(POLICY).await.unwrap();
        println!(
            "{POLICY} holds {keys} keys after the run ({} new: one per address ingested)",
            keys - MILLION as u64
        );

        // 3. A million expired entries pruned.
        let past = Timestamp(Timestamp::now().0 - 1);
        fill(&store, "expired", MILLION, past).await;
        let t = Instant::now();
        let pruned = store.prune_policy_state(Timestamp::now()).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(pruned >= MILLION as u64, "{pruned}");
        println!(
            "prune: {pruned} expired entries deleted in {secs:.1} s ({:.0}/s)",
            pruned as f64 / secs
        );
    });
}

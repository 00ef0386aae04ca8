//! A policy's `state` (WIT 0.3.0) with real compiled components (`make guests`):
//!
//! - the `stateful` test guest: counts per recipient across messages, per policy name,
//!   expiring against the message's time; the limits (64 writes a call, the key count,
//!   the value size) refuse a write without failing the call; a call that traps leaves
//!   nothing behind; a 0.2.0 component runs beside it;
//! - the `repeated-mailbox-full` example over the labelled corpus: every real soft
//!   mailbox-full bounce becomes hard on its third send within the window, and no other
//!   message of the corpus is ever changed by it;
//! - the same example in a real `Poller` against Dovecot, on SQLite and PostgreSQL: the
//!   state is committed with each message, and a pass stopped half-way (a crash) neither
//!   loses nor doubles a count.

mod policy_support;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rebound::config::{RulesConfig, TlsMode};
use rebound::detector::Detection;
use rebound::policy::state::StateLimits;
use rebound::policy::{ModuleOptions, Outcome, PolicyChain, StateSession, WorldVersion};
use rebound::pop3::poller::{Poller, Step};
use rebound::store::{RecipientState, Store, Timestamp};
use rebound::verdict::{Blame, BounceClass, Reason};

use policy_support::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A soft mailbox-full bounce for `jane@example.org`.
fn full_mailbox() -> Detection {
    dsn_detection(
        "jane@example.org",
        "4.2.2",
        "452 4.2.2 <jane@example.org>: mailbox full",
        bounce("jane@example.org", Reason::MailboxFull, "4.2.2"),
    )
}

/// The diagnostic the `stateful` guest reported for the first recipient.
fn report(chain: &PolicyChain, d: &Detection, state: &Arc<StateSession>) -> String {
    let run = chain.run_with(RAW, d, state).unwrap();
    assert!(
        matches!(run.steps[0].outcome, Outcome::Replaced(_)),
        "{:?}",
        run.steps[0].outcome
    );
    run.verdict.recipients[0]
        .diagnostic
        .clone()
        .unwrap_or_default()
}

#[test]
fn state_counts_per_policy_and_expires_against_the_message_time() {
    let path = guest_or_skip!("stateful");
    let counter = module("counter", &path, with_config(&[("ttl", "60")]));
    assert_eq!(counter.world_version(), WorldVersion::V0_3);
    assert!(counter.uses_state());
    let chain = PolicyChain::new(vec![counter]);
    assert!(chain.uses_state());
    let d = full_mailbox();
    let state = StateSession::new(None, at(1_000_000));
    for n in 1..=3 {
        let run = chain.run_with(RAW, &d, &state).unwrap();
        assert_eq!(
            run.verdict.recipients[0].diagnostic.as_deref(),
            Some(format!("count={n} now=1000000").as_str())
        );
        assert_eq!(run.state_writes.len(), 1, "{:?}", run.state_writes);
    }
    // Another policy (the same code under another name) has its own keys.
    let other = PolicyChain::new(vec![module("other", &path, ModuleOptions::default())]);
    assert_eq!(report(&other, &d, &state), "count=1 now=1000000");
    // 59 s later the counter is there; 60 s after the last write it has expired.
    state.begin_message(at(1_000_059));
    assert_eq!(report(&chain, &d, &state), "count=4 now=1000059");
    state.begin_message(at(1_000_119));
    assert_eq!(report(&chain, &d, &state), "count=1 now=1000119");
    // A fresh session (another run of `policy test`) starts empty.
    assert_eq!(
        report(&chain, &d, &StateSession::new(None, at(5))),
        "count=1 now=5"
    );
}

#[test]
fn limits_refuse_writes_without_failing_the_call() {
    let path = guest_or_skip!("stateful");
    let d = full_mailbox();
    let flood = PolicyChain::new(vec![module(
        "flood",
        &path,
        with_config(&[("op", "flood")]),
    )]);
    let state = StateSession::ephemeral();
    assert_eq!(report(&flood, &d, &state), "ok=64 too-many-writes=36");

    let mut few = with_config(&[("op", "flood")]);
    few.state = StateLimits {
        max_keys: 10,
        ..few.state
    };
    let few = PolicyChain::new(vec![module("few", &path, few)]);
    let state = StateSession::ephemeral();
    assert_eq!(report(&few, &d, &state), "ok=10 full=54 too-many-writes=36");
    // A second later, 100 other keys: none fits.
    state.begin_message(SystemTime::now() + Duration::from_secs(5));
    let run = few.run_with(RAW, &d, &state).unwrap();
    assert_eq!(
        run.verdict.recipients[0].diagnostic.as_deref(),
        Some("full=64 too-many-writes=36")
    );
    assert!(run.state_writes.is_empty(), "{:?}", run.state_writes);

    for (size, said) in [("16384", "ok"), ("16385", "too-large")] {
        let big = PolicyChain::new(vec![module(
            "big",
            &path,
            with_config(&[("op", "big"), ("size", size)]),
        )]);
        assert_eq!(report(&big, &d, &StateSession::ephemeral()), said, "{size}");
    }
}

#[test]
fn a_call_that_traps_leaves_nothing_in_state() {
    let path = guest_or_skip!("stateful");
    let d = full_mailbox();
    let state = StateSession::ephemeral();
    let counter = PolicyChain::new(vec![module("counter", &path, ModuleOptions::default())]);
    assert!(report(&counter, &d, &state).starts_with("count=1 "));
    // The same policy name, built to trap after its write.
    let trap = PolicyChain::new(vec![module(
        "counter",
        &path,
        with_config(&[("op", "trap")]),
    )]);
    let run = trap.run_with(RAW, &d, &state).unwrap();
    assert!(
        matches!(&run.steps[0].outcome, Outcome::Failed(f) if f.message.contains("trapping after a write")),
        "{:?}",
        run.steps[0].outcome
    );
    assert!(run.state_writes.is_empty(), "{:?}", run.state_writes);
    assert_eq!(run.verdict, d.verdict, "the verdict from before stands");
    assert!(report(&counter, &d, &state).starts_with("count=2 "));
}

#[test]
fn a_0_2_0_component_runs_beside_a_stateful_one() {
    let (Some(legacy), Some(stateful)) = (guest("legacy-v0-2"), guest("stateful")) else {
        return;
    };
    let legacy = module("legacy", &legacy, with_config(&[("blame", "recipient")]));
    assert_eq!(legacy.world_version(), WorldVersion::V0_2);
    assert!(!legacy.uses_state());
    let (imports, _) = legacy.describe();
    assert!(
        imports
            .iter()
            .all(|i| !i.contains("state") && !i.contains("@0.3.0")),
        "{imports:?}"
    );
    let counter = module("counter", &stateful, ModuleOptions::default());
    let d = dsn_detection(
        "b@example.org",
        "5.7.1",
        "550 5.7.1 legacy gateway: message refused",
        full_mailbox().verdict,
    );
    let chain = PolicyChain::new(vec![legacy, counter]);
    let run = chain.run_with(RAW, &d, &StateSession::ephemeral()).unwrap();
    let v = run.verdict;
    assert_eq!(v.decided_by, "policy:counter");
    assert_eq!(v.recipients.len(), 2, "{v:?}");
    // The 0.2.0 guest's own blame on what it added (blocked would be the sender's).
    assert_eq!(v.recipients[1].reason, Reason::Blocked);
    assert_eq!(v.recipients[1].blame, Some(Blame::Recipient));
    assert!(
        v.recipients.iter().all(|r| r
            .diagnostic
            .as_deref()
            .is_some_and(|d| d.starts_with("count=1 "))),
        "{v:?}"
    );
}

/// The recipients of a verdict that the example counts: soft mailbox-full, the
/// recipient's fault, a final failure.
fn counted(d: &Detection) -> Vec<String> {
    d.verdict
        .recipients
        .iter()
        .filter(|r| {
            r.reason == Reason::MailboxFull
                && r.bounce == Some(BounceClass::Soft)
                && r.blame == Some(Blame::Recipient)
                && r.action.as_deref() != Some("delayed")
        })
        .map(|r| r.address.clone())
        .collect()
}

/// `d` as the bounce of send `n`: the returned original's Message-ID made unique.
fn send(d: &Detection, n: usize) -> Detection {
    let mut d = d.clone();
    let original = d.report.original.get_or_insert_with(Default::default);
    let id = original.message_id.clone().unwrap_or_else(|| "send".into());
    original.message_id = Some(format!("{n}.{id}"));
    d
}

#[test]
fn repeated_mailbox_full_escalates_real_bounces_on_the_third_send() {
    escalates_real_bounces("repeated-mailbox-full");
}

#[test]
fn repeated_mailbox_full_in_python_escalates_the_same_bounces() {
    escalates_real_bounces("repeated-mailbox-full-py");
}

/// The example built as `guest` over the whole corpus.
fn escalates_real_bounces(guest: &str) {
    let Some(dir) = corpus::labelled() else {
        return;
    };
    let path = guest_or_skip!(guest);
    // Under the same name, so the Rust and the Python one are told apart only here.
    let m = module("repeated-mailbox-full", &path, example_options(guest));
    assert!(m.uses_state());
    let chain = PolicyChain::new(vec![m]);
    let (mut escalated, mut untouched) = (0, 0);
    let mut families = BTreeSet::new();
    for file in corpus::eml_files(&dir) {
        let raw = std::fs::read(&file).unwrap();
        let d = rebound::detector::detect(&raw);
        let addresses = counted(&d);
        let state = StateSession::new(None, at(2_000_000_000));
        let name = file.display();
        if addresses.is_empty() {
            // Anything else is left alone, however often it comes back.
            for n in 0..3 {
                let run = chain.run_with(&raw, &send(&d, n), &state).unwrap();
                assert_eq!(run.steps[0].outcome, Outcome::Kept, "{name}");
                assert!(run.state_writes.is_empty(), "{name}");
            }
            untouched += 1;
            continue;
        }
        for n in 0..2 {
            let run = chain.run_with(&raw, &send(&d, n), &state).unwrap();
            assert_eq!(run.steps[0].outcome, Outcome::Kept, "{name}: send {n}");
            // The same send told twice counts once.
            let run = chain.run_with(&raw, &send(&d, n), &state).unwrap();
            assert_eq!(
                run.steps[0].outcome,
                Outcome::Kept,
                "{name}: send {n} again"
            );
        }
        state.begin_message(at(2_000_000_000 + 29 * 86_400));
        let run = chain.run_with(&raw, &send(&d, 2), &state).unwrap();
        assert_eq!(
            run.verdict.decided_by, "policy:repeated-mailbox-full",
            "{name}"
        );
        for address in &addresses {
            let r = run
                .verdict
                .recipients
                .iter()
                .find(|r| &r.address == address)
                .unwrap();
            assert_eq!(
                (r.bounce, r.reason, r.blame),
                (
                    Some(BounceClass::Hard),
                    Reason::MailboxFull,
                    Some(Blame::Recipient)
                ),
                "{name}"
            );
            assert!(
                r.diagnostic
                    .as_deref()
                    .is_some_and(|t| t.starts_with("mailbox full 3 times in 30 days")),
                "{name}: {r:?}"
            );
        }
        // Every other recipient of the message is as the detector said.
        for (before, after) in d.verdict.recipients.iter().zip(&run.verdict.recipients) {
            if !addresses.contains(&before.address) {
                assert_eq!(before.bounce, after.bounce, "{name}");
            }
        }
        // A fourth send after the window of the first three starts again from one.
        state.begin_message(at(2_000_000_000 + 90 * 86_400));
        let run = chain.run_with(&raw, &send(&d, 3), &state).unwrap();
        assert_eq!(
            run.steps[0].outcome,
            Outcome::Kept,
            "{name}: after the window"
        );
        // The family: the file's name without its number (`postfix-03.eml` → postfix).
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        families.insert(
            stem.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_owned(),
        );
        escalated += 1;
    }
    eprintln!(
        "{guest}: {escalated} real mailbox-full bounces escalated on their third send \
         from {} families {families:?}; {untouched} other messages untouched",
        families.len()
    );
    assert!(
        escalated >= 10,
        "{escalated} mailbox-full bounces in the corpus"
    );
    assert!(families.len() >= 10, "{families:?}");
}

/// The first corpus bounce the example counts, with its original Message-ID in the raw
/// message, and that id. `None` (reported as skipped) without the corpus; a corpus with
/// no such bounce fails the test, which could not run otherwise.
fn real_full_mailbox() -> Option<(Vec<u8>, String, String)> {
    let dir = corpus::labelled()?;
    let found = corpus::eml_files(&dir.join("bsd"))
        .into_iter()
        .find_map(|file| {
            let raw = std::fs::read(&file).ok()?;
            let d = rebound::detector::detect(&raw);
            let [address] = counted(&d).try_into().ok()?;
            let id = d.report.original.as_ref()?.message_id.clone()?;
            (id.len() > 8 && String::from_utf8_lossy(&raw).contains(&id))
                .then_some((raw, address, id))
        });
    assert!(
        found.is_some(),
        "no final mailbox-full bounce with its original's Message-ID in {}/bsd",
        dir.display()
    );
    found
}

/// Send `n`'s bounce: `raw` with the original's Message-ID made unique.
fn nth_send(raw: &[u8], id: &str, n: usize) -> Vec<u8> {
    String::from_utf8_lossy(raw)
        .replace(id, &format!("{n}.{id}"))
        .into_bytes()
}

/// False when it could not run (reported as skipped).
async fn escalates_in_a_real_poller(store: Store) -> bool {
    let Some((raw, address, id)) = real_full_mailbox() else {
        return false;
    };
    let Some(path) = guest("repeated-mailbox-full") else {
        return false;
    };
    if !dovecot::available() {
        return false;
    }
    let d = dovecot::Dovecot::start();
    let config = d.config(TlsMode::None);
    let chain = Arc::new(PolicyChain::new(vec![module(
        "repeated-mailbox-full",
        &path,
        ModuleOptions::default(),
    )]));
    let poller = |store: &Store| {
        Poller::new(
            config.clone(),
            dovecot::PASSWORD.into(),
            store.clone(),
            chain.clone(),
            RulesConfig::default(),
        )
    };
    let key = format!("full:{}", address.to_ascii_lowercase());
    let events = |v: Option<rebound::store::policy_state::StateEntry>| {
        v.map_or(0, |e| e.value.lines().count())
    };

    // Send 1 comes back; the pass stops (a crash) after its commit, before its deletion.
    d.add_message(&nth_send(&raw, &id, 1));
    let crash_at = |at: Step| poller(&store).with_failpoint(Arc::new(move |step, _| step == at));
    assert!(crash_at(Step::AfterCommit).poll_once().await.is_err());
    let now = Timestamp::now();
    let entry = store
        .policy_state_get("repeated-mailbox-full", &key, now)
        .await
        .unwrap();
    assert_eq!(events(entry), 1, "committed with the message");

    // Send 2 comes back; the pass stops after fetching it, before its commit (send 1 is in
    // the ledger: not judged again).
    d.add_message(&nth_send(&raw, &id, 2));
    assert!(crash_at(Step::AfterRetr).poll_once().await.is_err());
    let entry = store
        .policy_state_get("repeated-mailbox-full", &key, now)
        .await
        .unwrap();
    assert_eq!(events(entry), 1, "nothing of an uncommitted message");

    // The next pass records send 2.
    let s = poller(&store).poll_once().await.unwrap();
    assert_eq!(s.processed, 1, "{s}");
    let entry = store
        .policy_state_get("repeated-mailbox-full", &key, now)
        .await
        .unwrap();
    assert_eq!(events(entry), 2);
    let r = store.recipient(&address).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.hard_count),
        (RecipientState::Active, 0),
        "{r:?}"
    );

    // Send 2 told again, and send 3: the third send is hard.
    d.add_message(&nth_send(&raw, &id, 2));
    d.add_message(&nth_send(&raw, &id, 3));
    let s = poller(&store).poll_once().await.unwrap();
    assert_eq!(s.processed, 2, "{s}");
    let entry = store
        .policy_state_get("repeated-mailbox-full", &key, now)
        .await
        .unwrap();
    assert_eq!(events(entry), 3, "the repeated send counted once");
    let r = store.recipient(&address).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.hard_count),
        (RecipientState::Bounced, 1),
        "{r:?}"
    );
    assert_eq!(r.last_reason.as_deref(), Some("mailbox-full"));

    // Nothing new: nothing changes.
    let s = poller(&store).poll_once().await.unwrap();
    assert_eq!(s.processed, 0, "{s}");
    assert_eq!(
        store
            .policy_state_keys("repeated-mailbox-full")
            .await
            .unwrap(),
        1
    );
    true
}

#[tokio::test]
async fn repeated_mailbox_full_in_a_real_poller_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    if !escalates_in_a_real_poller(Store::open(&url).await.unwrap()).await {
        return;
    }
    // What the operator sees of it, and clearing it.
    let config = dir.path().join("rebound.toml");
    std::fs::write(&config, format!("[store]\nurl = {url:?}\n")).unwrap();
    let policy_state = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rebound"))
            .arg("--config")
            .arg(&config)
            .args(["policy", "state", "repeated-mailbox-full"])
            .args(extra)
            .env_remove("REBOUND_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let shown = policy_state(&[]);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("full:")
            && lines[0].matches("\\n").count() == 2
            && lines[1].contains("holds 1 keys"),
        "{shown}"
    );
    assert!(policy_state(&["--clear"]).contains("1 entries of repeated-mailbox-full deleted"));
    assert!(policy_state(&[]).contains("0 entries shown"));
}

#[tokio::test]
async fn repeated_mailbox_full_in_a_real_poller_on_postgres() {
    if !postgres::available() {
        return;
    }
    escalates_in_a_real_poller(Store::open(&postgres::database()).await.unwrap()).await;
}

#[test]
fn policy_test_keeps_state_across_its_messages() {
    let path = guest_or_skip!("repeated-mailbox-full");
    let Some((raw, _, id)) = real_full_mailbox() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=3 {
        std::fs::write(
            dir.path().join(format!("send-{n}.eml")),
            nth_send(&raw, &id, n),
        )
        .unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir.path())
        .args(["policy", "test"])
        .arg(&path)
        .arg(dir.path())
        .env_remove("REBOUND_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 messages: 1 changed"), "{stdout}");
    let changed: Vec<&str> = stdout.lines().filter(|l| l.contains(" → ")).collect();
    assert!(
        changed.len() == 1 && changed[0].contains("send-3.eml"),
        "{stdout}"
    );
}

/// The path IMAP and the provider webhooks take (`Stages::ingest`, one message per
/// transaction): the third send is hard, its state in the store, and a provider's retry
/// of a recorded event (the same ledger row) changes nothing.
#[tokio::test]
async fn repeated_mailbox_full_through_stages_ingest() {
    let Some((raw, address, id)) = real_full_mailbox() else {
        return;
    };
    let path = guest_or_skip!("repeated-mailbox-full");
    let store = Store::open("sqlite::memory:").await.unwrap();
    let chain = PolicyChain::new(vec![module(
        "repeated-mailbox-full",
        &path,
        ModuleOptions::default(),
    )]);
    let stages = rebound::pipeline::Stages {
        chain: Arc::new(arc_swap::ArcSwap::from_pointee(chain)),
        rules: RulesConfig::default(),
        unsubscribe: None,
        archive: false,
    };
    let ingest = |n: usize| {
        let ctx = rebound::store::EventContext::webhook("test", format!("event-{n}"));
        let raw = nth_send(&raw, &id, n);
        let stages = stages.clone();
        let store = store.clone();
        async move { stages.ingest(&store, ctx, &raw).await.unwrap() }
    };
    let key = format!("full:{}", address.to_ascii_lowercase());
    for n in 1..=2 {
        let got = ingest(n).await;
        assert_eq!(got.verdict.recipients[0].bounce, Some(BounceClass::Soft));
    }
    let retried = ingest(2).await;
    assert!(retried.outcome.duplicate);
    let third = ingest(3).await;
    assert_eq!(third.verdict.decided_by, "policy:repeated-mailbox-full");
    let entry = store
        .policy_state_get("repeated-mailbox-full", &key, Timestamp::now())
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(entry.value.lines().count(), 3, "{entry:?}");
    let r = store.recipient(&address).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.hard_count),
        (RecipientState::Bounced, 1),
        "{r:?}"
    );
}

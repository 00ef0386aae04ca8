//! World versions with real compiled components (`make guests` builds them): a component
//! built against the old WIT (`rebound:policy@0.1.0`, no blame) still loads and runs, and
//! the host derives the blame it cannot give; a current policy's own blame reaches the
//! final verdict; both versions run in one chain; `rebound policy check` names the version
//! (0.2.0 beside a 0.3.0 one with state: tests/policy_state.rs).

mod policy_support;

use rebound::policy::{ModuleOptions, Outcome, PolicyChain, WorldVersion};
use rebound::verdict::{Blame, BounceClass, MessageKind, Reason};

use policy_support::*;

/// A DSN that says "legacy", for `b@example.org`, over a built-in verdict that names
/// `a@example.org` (network-error, but carrying a sender blame the 0.1.0 guest cannot see).
fn legacy_detection() -> rebound::detector::Detection {
    let mut verdict = bounce("a@example.org", Reason::NetworkError, "4.4.1");
    verdict.recipients[0].blame = Some(Blame::Sender);
    dsn_detection(
        "b@example.org",
        "5.7.1",
        "550 5.7.1 legacy gateway: message refused",
        verdict,
    )
}

#[test]
fn legacy_component_loads_runs_and_gets_its_blame_derived() {
    let path = guest_or_skip!("legacy-v0-1");
    let m = module("legacy", &path, ModuleOptions::default());
    assert_eq!(m.world_version(), WorldVersion::V0_1);
    assert_eq!(m.world(), "rebound:policy/policy@0.1.0");
    let (imports, _) = m.describe();
    assert!(
        imports.iter().any(|i| i == "rebound:policy/types@0.1.0")
            && imports.iter().any(|i| i == "rebound:policy/host@0.1.0")
            && !imports.iter().any(|i| i.contains("@0.2.0")),
        "{imports:?}"
    );
    let chain = PolicyChain::new(vec![m.clone()]);

    let d = legacy_detection();
    let run = chain.run_detailed(RAW, &d).unwrap();
    assert!(
        matches!(run.steps[0].outcome, Outcome::Replaced(_)),
        "{:?}",
        run.steps[0].outcome
    );
    let v = run.verdict;
    assert_eq!(v.decided_by, "policy:legacy");
    assert_eq!(v.kind, MessageKind::Bounce);
    assert_eq!(v.recipients.len(), 2, "{v:?}");
    let (a, b) = (&v.recipients[0], &v.recipients[1]);
    // Shown without blame and returned without: derived again from network-error.
    assert_eq!(a.address, "a@example.org");
    assert_eq!(a.blame, Some(Blame::Transit), "{a:?}");
    // Added by the guest (reason blocked from its default config): blamed on the sender.
    assert_eq!(b.address, "b@example.org");
    assert_eq!(b.reason, Reason::Blocked);
    assert_eq!(b.status.as_deref(), Some("5.7.1"));
    assert_eq!(b.bounce, Some(BounceClass::Soft));
    assert_eq!(b.blame, Some(Blame::Sender), "{b:?}");

    // The config goes through the 0.1.0 host interface: a user-unknown is hard and the
    // recipient's.
    let m = module("legacy", &path, with_config(&[("reason", "user-unknown")]));
    let d = dsn_detection(
        "b@example.org",
        "5.1.1",
        "550 5.1.1 legacy gateway: no such user",
        legacy_detection().verdict,
    );
    let v = PolicyChain::new(vec![m]).run(RAW, &d).unwrap();
    assert_eq!(v.recipients[1].reason, Reason::UserUnknown);
    assert_eq!(v.recipients[1].bounce, Some(BounceClass::Hard));
    assert_eq!(v.recipients[1].blame, Some(Blame::Recipient));

    // A message that does not say "legacy" is kept, blame and all.
    let d = dsn_detection(
        "b@example.org",
        "5.7.1",
        "550 5.7.1 refused",
        legacy_detection().verdict,
    );
    let run = chain.run_detailed(RAW, &d).unwrap();
    assert_eq!(run.steps[0].outcome, Outcome::Kept);
    assert_eq!(run.verdict.recipients[0].blame, Some(Blame::Sender));
    assert_eq!(chain.stats()[0].calls, 2);
}

#[test]
fn explicit_blame_of_a_current_policy_reaches_the_final_verdict() {
    let path = guest_or_skip!("scripted");
    let m = module(
        "blamer",
        &path,
        with_config(&[("action", "blame"), ("blame", "sender")]),
    );
    assert_eq!(m.world_version(), WorldVersion::V0_3);
    let chain = PolicyChain::new(vec![m]);
    // user-unknown: the built-in blame is the recipient's.
    let d = detection(
        "550 5.1.1 <jane@example.org>: unknown",
        bounce("jane@example.org", Reason::UserUnknown, "5.1.1"),
    );
    assert_eq!(d.verdict.recipients[0].blame, Some(Blame::Recipient));
    let v = chain.run(RAW, &d).unwrap();
    assert_eq!(v.decided_by, "policy:blamer");
    assert_eq!(v.recipients[0].reason, Reason::UserUnknown);
    assert_eq!(v.recipients[0].bounce, Some(BounceClass::Hard));
    assert_eq!(v.recipients[0].blame, Some(Blame::Sender));
}

#[test]
fn one_chain_runs_both_versions_in_order() {
    let (Some(scripted), Some(legacy)) = (guest("scripted"), guest("legacy-v0-1")) else {
        return;
    };
    let blamer = module(
        "blamer",
        &scripted,
        with_config(&[("action", "blame"), ("blame", "unknown")]),
    );
    let legacy = module("legacy", &legacy, ModuleOptions::default());
    let d = legacy_detection();

    // The current policy's blame, then the 0.1.0 policy, which cannot carry it: derived.
    let chain = PolicyChain::new(vec![blamer.clone(), legacy.clone()]);
    let v = chain.run(RAW, &d).unwrap();
    assert_eq!(v.decided_by, "policy:legacy");
    assert_eq!(v.recipients[0].blame, Some(Blame::Transit));
    assert_eq!(v.recipients[1].blame, Some(Blame::Sender));

    // The other way round, the current policy has the last word.
    let chain = PolicyChain::new(vec![legacy, blamer]);
    let v = chain.run(RAW, &d).unwrap();
    assert_eq!(v.decided_by, "policy:blamer");
    assert!(
        v.recipients.iter().all(|r| r.blame == Some(Blame::Unknown)),
        "{v:?}"
    );
}

#[test]
fn policy_check_prints_the_world_version() {
    let (Some(v1), Some(v2), Some(current)) = (
        guest("legacy-v0-1"),
        guest("legacy-v0-2"),
        guest("invalid-recipient"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (path, world) in [
        (&v1, "rebound:policy/policy@0.1.0"),
        (&v2, "rebound:policy/policy@0.2.0"),
        (&current, "rebound:policy/policy@0.3.0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rebound"))
            .current_dir(dir.path())
            .arg("policy")
            .arg("check")
            .arg(path)
            .env_remove("REBOUND_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.trim() == format!("world    {world}")),
            "{stdout}"
        );
    }
}

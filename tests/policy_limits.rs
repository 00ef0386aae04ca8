//! The sandbox's bounds on what a guest holds and how many instances of a module live, and
//! fail-closed modules that are disabled: the built guests of `make guests` against the
//! host's caps.

#[macro_use]
mod policy_support;

use std::time::{Duration, Instant};

use policy_support::*;
use rebound::config::OnError;
use rebound::policy::{Error, FailureKind, ModuleOptions, Outcome, PolicyChain, sandbox};
use rebound::verdict::Reason;

#[test]
fn a_guest_creating_resources_in_a_loop_is_stopped_at_the_resource_cap() {
    let path = guest_or_skip!("resource-hog");
    let scripted = guest_or_skip!("scripted");
    let o = ModuleOptions {
        timeout: Duration::from_secs(10),
        ..ModuleOptions::default()
    };
    let hog = module("hog", &path, o.clone());
    let d = detection(
        "hostile",
        bounce("x@example.org", Reason::UserUnknown, "5.1.1"),
    );

    // Without the cap it would run to its 10 s time cap (and a million table entries).
    let t = Instant::now();
    let run = PolicyChain::new(vec![hog.clone()])
        .run_detailed(RAW, &d)
        .unwrap();
    let took = t.elapsed();
    match &run.steps[0].outcome {
        Outcome::Failed(f) => {
            assert_eq!(f.kind, FailureKind::Resources, "{f}");
            assert!(
                f.message
                    .contains(&format!("more than {} resources", sandbox::MAX_RESOURCES)),
                "{f}"
            );
        }
        other => panic!("expected a resource failure, got {other:?}"),
    }
    assert_eq!(run.verdict, d.verdict, "the verdict from before it stands");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The host is still up: the same module answers a harmless message, and a module after
    // it in the chain still decides.
    let calm = PolicyChain::new(vec![hog.clone()])
        .run_detailed(BEHAVE, &detection("calm", other()))
        .unwrap();
    assert_eq!(calm.steps[0].outcome, Outcome::Kept);
    let next = module("next", &scripted, with_config(&[("action", "not-bounce")]));
    let v = PolicyChain::new(vec![hog.clone(), next])
        .run(RAW, &d)
        .unwrap();
    assert_eq!(v.decided_by, "policy:next");
    assert_eq!(hog.stats().failures, 2);

    // With on_error = "fail" the message is left unprocessed, with the reason.
    let strict = module(
        "strict-hog",
        &path,
        ModuleOptions {
            on_error: OnError::Fail,
            ..o
        },
    );
    match PolicyChain::new(vec![strict]).run(RAW, &d) {
        Err(Error::Failed { module, message }) => {
            assert_eq!(module, "strict-hog");
            assert!(message.contains("resources"), "{message}");
        }
        other => panic!("expected Error::Failed, got {other:?}"),
    }
}

#[test]
fn live_instances_of_a_module_are_bounded_and_callers_wait_for_one() {
    let path = guest_or_skip!("call-counter");
    let o = ModuleOptions {
        max_instances: 2,
        ..ModuleOptions::default()
    };
    let m = module("counter", &path, o);
    let chain = PolicyChain::new(vec![m.clone()]);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    let v = chain.run(RAW, &detection("x", other())).unwrap();
                    assert_eq!(v.decided_by, "policy:counter");
                }
            });
        }
    });
    let stats = m.stats();
    assert_eq!(stats.calls, 200);
    assert_eq!(
        stats.failures, 0,
        "callers waited rather than failed: {stats:?}"
    );
    assert!(
        (1..=2).contains(&stats.instances),
        "8 callers at once made {} instances",
        stats.instances
    );
}

#[test]
fn a_call_that_finds_every_instance_busy_past_its_wait_fails_as_busy() {
    let path = guest_or_skip!("endless-loop");
    let o = ModuleOptions {
        max_instances: 1,
        instance_wait: Duration::from_millis(50),
        timeout: Duration::from_millis(800),
        ..ModuleOptions::default()
    };
    let m = module("loop", &path, o);
    let chain = PolicyChain::new(vec![m.clone()]);
    let d = detection("x", other());
    std::thread::scope(|s| {
        let busy = s.spawn(|| chain.run_detailed(RAW, &d).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let run = chain.run_detailed(BEHAVE, &d).unwrap();
        match &run.steps[0].outcome {
            Outcome::Failed(f) => {
                assert_eq!(f.kind, FailureKind::Busy, "{f}");
                assert!(f.message.contains("all 1 instances stayed busy"), "{f}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let first = busy.join().unwrap();
        assert!(
            matches!(&first.steps[0].outcome, Outcome::Failed(f) if f.kind == FailureKind::Timeout)
        );
    });
    // Free again: the next call gets an instance.
    let run = chain.run_detailed(BEHAVE, &d).unwrap();
    assert_eq!(run.steps[0].outcome, Outcome::Kept);
}

#[test]
fn a_disabled_fail_closed_module_holds_every_message_loudly() {
    let path = guest_or_skip!("scripted");
    let mut o = with_config(&[("action", "error"), ("only_if", "boom")]);
    o.max_failures = 2;
    o.on_error = OnError::Fail;
    let strict = module("strict", &path, o);
    let chain = PolicyChain::new(vec![strict.clone()]);
    let boom = detection("boom", other());
    let fine = detection(
        "fine",
        bounce("x@example.org", Reason::UserUnknown, "5.1.1"),
    );

    for _ in 0..2 {
        assert!(matches!(chain.run(RAW, &boom), Err(Error::Failed { .. })));
    }
    assert!(strict.is_disabled());
    let held_before = rebound::metrics::get(
        rebound::metrics::POLICY_CALLS,
        &[("policy", "strict"), ("outcome", "held")],
    );

    // Disabled, it is not called, but the message is not judged without it either: the
    // chain fails (the poller leaves the message on the server), whatever the message.
    for d in [&fine, &boom] {
        match chain.run(RAW, d) {
            Err(e @ Error::Disabled { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("policy strict is disabled after 2 failures"),
                    "{text}"
                );
                assert!(
                    text.contains("scripted failure"),
                    "the last failure: {text}"
                );
                assert!(text.contains("held"), "{text}");
            }
            other => panic!("expected Error::Disabled, got {other:?}"),
        }
    }
    assert!(matches!(
        chain.run_detailed(RAW, &fine),
        Err(Error::Disabled { .. })
    ));
    let s = strict.stats();
    assert!(s.disabled);
    assert_eq!(s.on_error, "fail");
    assert_eq!(s.held, 3, "{s:?}");
    assert_eq!(s.calls, 2, "a disabled module is not called");
    let held_now = rebound::metrics::get(
        rebound::metrics::POLICY_CALLS,
        &[("policy", "strict"), ("outcome", "held")],
    );
    assert_eq!(held_now - held_before, 3, "counted in /metrics");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["held"], 3, "shown by GET /policies: {json}");
    assert_eq!(json["on_error"], "fail");

    // A module before it in the chain does not change that.
    let keep = module("keep", &path, ModuleOptions::default());
    assert!(matches!(
        PolicyChain::new(vec![keep, strict.clone()]).run(RAW, &fine),
        Err(Error::Disabled { .. })
    ));

    // Enabled again, it judges again.
    strict.enable();
    assert_eq!(chain.run(RAW, &fine).unwrap(), fine.verdict);

    // A skip module, disabled, is skipped (and counted as such).
    let mut o = with_config(&[("action", "error")]);
    o.max_failures = 1;
    let lax = module("lax", &path, o);
    let chain = PolicyChain::new(vec![lax.clone()]);
    chain.run(RAW, &fine).unwrap();
    assert!(lax.is_disabled());
    let run = chain.run_detailed(RAW, &fine).unwrap();
    assert_eq!(run.steps[0].outcome, Outcome::Disabled);
    assert_eq!(run.verdict, fine.verdict);
    assert_eq!(lax.stats().held, 0);
    assert_eq!(
        rebound::metrics::get(
            rebound::metrics::POLICY_CALLS,
            &[("policy", "lax"), ("outcome", "disabled")],
        ),
        1
    );
}

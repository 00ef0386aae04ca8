//! The policy chain with real compiled components (`make guests` builds them): decisions,
//! chain order, `decided_by`, failures and `on_error`, disabling, instance reuse and
//! recycling, every hostile guest contained, and refused components.

mod policy_support;

use std::time::{Duration, Instant};

use rebound::config::OnError;
use rebound::policy::{Error, FailureKind, ModuleOptions, Outcome, PolicyChain, PolicyModule};
use rebound::verdict::{BUILTIN, BounceClass, MessageKind, Reason};

use policy_support::*;

/// The invalid-recipient example in each language it is written in: every test of it
/// runs on each.
const INVALID_RECIPIENT: [&str; 2] = ["invalid-recipient", "invalid-recipient-py"];

fn outcome_of(chain: &PolicyChain, raw: &[u8], d: &rebound::detector::Detection) -> Outcome {
    chain
        .run_detailed(raw, d)
        .expect("chain run")
        .steps
        .remove(0)
        .outcome
}

#[test]
fn every_guest_example_instantiates_against_the_host() {
    // Every crate in guest-examples/: a new example is covered without touching this test.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let name = name.as_str();
        let path = guest_or_skip!(name);
        let m = module(name, &path, ModuleOptions::default());
        let chain = PolicyChain::new(vec![m]);
        let d = detection("hello", other());
        let run = chain.run_detailed(RAW, &d).unwrap();
        assert!(
            !matches!(run.steps[0].outcome, Outcome::Failed(_)),
            "{name}: {:?}",
            run.steps[0].outcome
        );
    }
}

#[test]
fn invalid_recipient_hard_bounces_the_named_recipient() {
    for name in INVALID_RECIPIENT {
        let path = guest_or_skip!(name);
        let chain = PolicyChain::new(vec![module(name, &path, example_options(name))]);
        let text = "This is the mail system at host mx.example.net.\n\n\
                    Delivery to the following recipient failed:\n\n\
                    550 5.1.1 <Jane.Doe@Example.ORG>: Invalid recipient\n";
        let d = detection(text, other());
        let v = chain.run(RAW, &d).unwrap();
        assert_eq!(v.kind, MessageKind::Bounce);
        assert_eq!(v.decided_by, format!("policy:{name}"));
        assert_eq!(v.recipients.len(), 1);
        let r = &v.recipients[0];
        assert_eq!(r.address, "Jane.Doe@example.org");
        assert_eq!(r.bounce, Some(BounceClass::Hard));
        assert_eq!(r.reason, Reason::UserUnknown);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));

        // Another address, another message: the recipient comes from the message.
        let d = detection(
            "Invalid recipient: bob@example.com (no such mailbox)",
            other(),
        );
        let v = chain.run(RAW, &d).unwrap();
        assert_eq!(v.recipients[0].address, "bob@example.com");
        assert_eq!(v.recipients[0].status.as_deref(), Some("5.1.1"));
    }
}

#[test]
fn invalid_recipient_upgrades_the_recipient_of_a_soft_verdict_and_keeps_the_others() {
    for name in INVALID_RECIPIENT {
        let path = guest_or_skip!(name);
        let chain = PolicyChain::new(vec![module(name, &path, example_options(name))]);
        let mut builtin = bounce("carol@example.org", Reason::Undefined, "5.0.0");
        builtin
            .recipients
            .extend(bounce("dave@example.org", Reason::MailboxFull, "4.2.2").recipients);
        let d = dsn_detection(
            "carol@example.org",
            "5.0.0",
            "550 5.1.1 carol@example.org: invalid recipient",
            builtin,
        );
        let v = chain.run(RAW, &d).unwrap();
        assert_eq!(v.recipients.len(), 2);
        assert_eq!(v.recipients[0].bounce, Some(BounceClass::Hard));
        assert_eq!(v.recipients[0].reason, Reason::UserUnknown);
        assert_eq!(v.recipients[1].address, "dave@example.org");
        assert_eq!(v.recipients[1].reason, Reason::MailboxFull);
    }
}

#[test]
fn invalid_recipient_keeps_messages_that_do_not_say_it() {
    for name in INVALID_RECIPIENT {
        let path = guest_or_skip!(name);
        let chain = PolicyChain::new(vec![module(name, &path, example_options(name))]);
        let d = dsn_detection(
            "x@example.org",
            "4.2.2",
            "452 4.2.2 mailbox full",
            bounce("x@example.org", Reason::MailboxFull, "4.2.2"),
        );
        let v = chain.run(RAW, &d).unwrap();
        assert_eq!(v, d.verdict);
        assert_eq!(v.decided_by, BUILTIN);
    }
}

#[test]
fn chain_preserves_config_order_and_names_the_last_changer() {
    let path = guest_or_skip!("scripted");
    let a = module(
        "a",
        &path,
        with_config(&[("action", "append"), ("address", "a@example.org")]),
    );
    let b = module(
        "b",
        &path,
        with_config(&[("action", "append"), ("address", "b@example.org")]),
    );
    let keep = module("keeper", &path, with_config(&[("action", "keep")]));
    let d = detection("x", other());

    let v = PolicyChain::new(vec![a.clone(), b.clone(), keep.clone()])
        .run(RAW, &d)
        .unwrap();
    let addrs: Vec<_> = v.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addrs, ["a@example.org", "b@example.org"]);
    assert_eq!(
        v.decided_by, "policy:b",
        "a keeping module does not take the credit"
    );

    let v = PolicyChain::new(vec![b, a]).run(RAW, &d).unwrap();
    let addrs: Vec<_> = v.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addrs, ["b@example.org", "a@example.org"]);
    assert_eq!(v.decided_by, "policy:a");
    // The class was left open: the host's rule made 5.1.1 user-unknown hard.
    assert!(
        v.recipients
            .iter()
            .all(|r| r.bounce == Some(BounceClass::Hard))
    );
}

#[test]
fn keep_replace_and_not_bounce() {
    let path = guest_or_skip!("scripted");
    let d = dsn_detection(
        "x@example.org",
        "5.1.1",
        "550 5.1.1 unknown",
        bounce("x@example.org", Reason::UserUnknown, "5.1.1"),
    );

    let keep = PolicyChain::new(vec![module("k", &path, with_config(&[("action", "keep")]))]);
    assert_eq!(keep.run(RAW, &d).unwrap(), d.verdict);

    let same = PolicyChain::new(vec![module(
        "same",
        &path,
        with_config(&[("action", "replace-same")]),
    )]);
    assert_eq!(outcome_of(&same, RAW, &d), Outcome::Kept);
    assert_eq!(same.run(RAW, &d).unwrap().decided_by, BUILTIN);

    let soften = PolicyChain::new(vec![module(
        "soften",
        &path,
        with_config(&[("action", "soften")]),
    )]);
    let v = soften.run(RAW, &d).unwrap();
    assert_eq!(v.recipients[0].bounce, Some(BounceClass::Soft));
    assert_eq!(v.decided_by, "policy:soften");

    let nb = PolicyChain::new(vec![module(
        "nb",
        &path,
        with_config(&[("action", "not-bounce")]),
    )]);
    let v = nb.run(RAW, &d).unwrap();
    assert_eq!(v.kind, MessageKind::Other);
    assert!(v.recipients.is_empty());
    assert_eq!(v.decided_by, "policy:nb");
}

#[test]
fn policy_error_keeps_the_verdict_and_on_error_fail_stops_the_chain() {
    let path = guest_or_skip!("scripted");
    let d = detection("x", bounce("x@example.org", Reason::UserUnknown, "5.1.1"));
    let failing = module("failing", &path, with_config(&[("action", "error")]));
    let after = module("after", &path, with_config(&[("action", "not-bounce")]));

    let run = PolicyChain::new(vec![failing.clone(), after])
        .run_detailed(RAW, &d)
        .unwrap();
    assert!(
        matches!(&run.steps[0].outcome, Outcome::Failed(f) if f.kind == FailureKind::PolicyError)
    );
    assert_eq!(
        run.verdict.decided_by, "policy:after",
        "the chain goes on after a skip failure"
    );
    assert_eq!(failing.stats().failures, 1);

    let mut o = with_config(&[("action", "error")]);
    o.on_error = OnError::Fail;
    let strict = PolicyChain::new(vec![module("strict", &path, o)]);
    match strict.run(RAW, &d) {
        Err(Error::Failed { module, message }) => {
            assert_eq!(module, "strict");
            assert!(message.contains("scripted failure"), "{message}");
        }
        other => panic!("expected Error::Failed, got {other:?}"),
    }
}

#[test]
fn module_is_disabled_after_max_failures_in_a_row_and_can_be_enabled() {
    let path = guest_or_skip!("scripted");
    let mut o = with_config(&[("action", "error"), ("only_if", "boom")]);
    o.max_failures = 3;
    let m = module("flaky", &path, o);
    let chain = PolicyChain::new(vec![m.clone()]);
    let boom = detection("boom", other());
    let fine = detection("fine", other());

    chain.run(RAW, &boom).unwrap();
    chain.run(RAW, &boom).unwrap();
    chain.run(RAW, &fine).unwrap(); // a success resets the streak
    assert_eq!(m.stats().consecutive_failures, 0);
    for _ in 0..3 {
        chain.run(RAW, &boom).unwrap();
    }
    let s = m.stats();
    assert!(s.disabled, "{s:?}");
    assert_eq!(s.failures, 5);
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("scripted failure")
    );
    assert_eq!(outcome_of(&chain, RAW, &fine), Outcome::Disabled);
    assert_eq!(m.stats().calls, 6, "a disabled module is not called");

    m.enable();
    assert_eq!(outcome_of(&chain, RAW, &fine), Outcome::Kept);
}

#[test]
fn instances_are_reused_and_recycled() {
    let path = guest_or_skip!("call-counter");
    let addr = |chain: &PolicyChain| {
        chain.run(RAW, &detection("x", other())).unwrap().recipients[0]
            .address
            .clone()
    };

    let reused = PolicyChain::new(vec![module("counter", &path, ModuleOptions::default())]);
    let seen: Vec<String> = (0..3).map(|_| addr(&reused)).collect();
    assert_eq!(
        seen,
        [
            "call-1@example.org",
            "call-2@example.org",
            "call-3@example.org"
        ]
    );
    assert_eq!(reused.stats()[0].instances, 1);

    let o = ModuleOptions {
        recycle_after: 2,
        ..ModuleOptions::default()
    };
    let recycled = PolicyChain::new(vec![module("counter", &path, o)]);
    let seen: Vec<String> = (0..5).map(|_| addr(&recycled)).collect();
    assert_eq!(
        seen,
        [
            "call-1@example.org",
            "call-2@example.org",
            "call-1@example.org",
            "call-2@example.org",
            "call-1@example.org"
        ]
    );
    assert_eq!(recycled.stats()[0].instances, 3);
}

/// Runs a hostile guest once (it must fail with `kind`, the verdict unchanged, within
/// `within`), then a harmless message (it must answer normally), then a chain with a
/// well-behaved module after it (which must still decide).
fn assert_contained(name: &str, options: ModuleOptions, kind: FailureKind, within: Duration) {
    let path = guest_or_skip!(name);
    let scripted = guest_or_skip!("scripted");
    let hostile = module(name, &path, options);
    let d = detection(
        "hostile",
        bounce("x@example.org", Reason::UserUnknown, "5.1.1"),
    );

    let t = Instant::now();
    let run = PolicyChain::new(vec![hostile.clone()])
        .run_detailed(RAW, &d)
        .unwrap();
    let took = t.elapsed();
    match &run.steps[0].outcome {
        Outcome::Failed(f) => assert_eq!(f.kind, kind, "{name}: {f}"),
        other => panic!("{name}: expected a failure, got {other:?}"),
    }
    assert_eq!(
        run.verdict, d.verdict,
        "{name}: the verdict before it stands"
    );
    assert!(took < within, "{name}: took {took:?}");

    // The host answers the next message correctly, with the same module.
    let calm = detection("calm", other());
    let run = PolicyChain::new(vec![hostile.clone()])
        .run_detailed(BEHAVE, &calm)
        .unwrap();
    assert_eq!(
        run.steps[0].outcome,
        Outcome::Kept,
        "{name} on a harmless message"
    );

    // And a module after it in the chain still gets its say.
    let next = module("next", &scripted, with_config(&[("action", "not-bounce")]));
    let v = PolicyChain::new(vec![hostile.clone(), next])
        .run(RAW, &d)
        .unwrap();
    assert_eq!(v.decided_by, "policy:next", "{name}");
    assert_eq!(hostile.stats().failures, 2, "{name}");
}

#[test]
fn endless_loop_is_stopped_by_the_time_cap() {
    let o = ModuleOptions {
        timeout: Duration::from_millis(50),
        ..ModuleOptions::default()
    };
    assert_contained(
        "endless-loop",
        o,
        FailureKind::Timeout,
        Duration::from_millis(500),
    );
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_cap() {
    let o = ModuleOptions {
        max_memory: 16 << 20,
        timeout: Duration::from_secs(5),
        ..ModuleOptions::default()
    };
    assert_contained(
        "memory-bomb",
        o,
        FailureKind::OutOfMemory,
        Duration::from_secs(3),
    );
}

#[test]
fn deep_recursion_is_stopped_by_the_stack_limit() {
    let o = ModuleOptions {
        timeout: Duration::from_secs(5),
        ..ModuleOptions::default()
    };
    assert_contained(
        "deep-recursion",
        o,
        FailureKind::StackOverflow,
        Duration::from_secs(3),
    );
}

#[test]
fn panic_is_contained_and_its_message_logged() {
    assert_contained(
        "panic",
        ModuleOptions::default(),
        FailureKind::Panic,
        Duration::from_secs(2),
    );
    let path = guest_or_skip!("panic");
    let m = module("panic", &path, ModuleOptions::default());
    PolicyChain::new(vec![m.clone()])
        .run(RAW, &detection("x", other()))
        .unwrap();
    let err = m.stats().last_error.unwrap_or_default();
    assert!(err.contains("no 100th recipient"), "{err}");
}

#[test]
fn trap_is_contained() {
    assert_contained(
        "trap",
        ModuleOptions::default(),
        FailureKind::Trap,
        Duration::from_secs(2),
    );
}

#[test]
fn huge_output_is_refused_as_garbage() {
    let slow = ModuleOptions {
        timeout: Duration::from_secs(5),
        ..ModuleOptions::default()
    };
    assert_contained(
        "huge-output",
        slow.clone(),
        FailureKind::Garbage,
        Duration::from_secs(5),
    );
    let mut text = with_config(&[("shape", "text")]);
    text.timeout = slow.timeout;
    assert_contained(
        "huge-output",
        text,
        FailureKind::Garbage,
        Duration::from_secs(5),
    );
}

#[test]
fn stderr_flood_is_bounded_and_the_call_succeeds() {
    let path = guest_or_skip!("stderr-flood");
    let o = ModuleOptions {
        timeout: Duration::from_secs(10),
        ..ModuleOptions::default()
    };
    let chain = PolicyChain::new(vec![module("flood", &path, o)]);
    let d = detection("x", other());
    assert_eq!(outcome_of(&chain, RAW, &d), Outcome::Kept);
    assert_eq!(outcome_of(&chain, RAW, &d), Outcome::Kept);
}

#[tokio::test]
async fn chain_runs_inside_an_async_runtime() {
    let path = guest_or_skip!("panic");
    let scripted = guest_or_skip!("scripted");
    let chain = PolicyChain::new(vec![
        module("panic", &path, ModuleOptions::default()),
        module("after", &scripted, with_config(&[("action", "append")])),
    ]);
    // The panicking guest writes to stderr, which WASI serves through a blocking call.
    let run = chain.run_detailed(RAW, &detection("x", other())).unwrap();
    assert!(
        matches!(&run.steps[0].outcome, Outcome::Failed(f) if f.kind == FailureKind::Panic),
        "{:?}",
        run.steps
    );
    assert_eq!(run.verdict.decided_by, "policy:after", "{:?}", run.steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_on_a_multi_threaded_runtime_worker() {
    let path = guest_or_skip!("panic");
    let flood = guest_or_skip!("stderr-flood");
    let scripted = guest_or_skip!("scripted");
    let chain = PolicyChain::new(vec![
        module("panic", &path, ModuleOptions::default()),
        module(
            "flood",
            &flood,
            ModuleOptions {
                timeout: Duration::from_secs(10),
                ..ModuleOptions::default()
            },
        ),
        module("after", &scripted, with_config(&[("action", "append")])),
    ]);
    let handle = tokio::spawn(async move {
        let run = chain.run_detailed(RAW, &detection("x", other())).unwrap();
        (run.verdict.decided_by.clone(), run.steps)
    });
    let (decided_by, steps) = handle.await.unwrap();
    assert!(
        matches!(&steps[0].outcome, Outcome::Failed(f) if f.kind == FailureKind::Panic),
        "{steps:?}"
    );
    assert_eq!(steps[1].outcome, Outcome::Kept, "{steps:?}");
    assert_eq!(decided_by, "policy:after");
}

#[test]
fn wrong_world_is_refused_with_a_clear_error() {
    let path = guest_or_skip!("wrong-world");
    let bytes = std::fs::read(path).unwrap();
    let err =
        PolicyModule::compile(engine(), "greeter", &bytes, ModuleOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::WrongWorld { .. }), "{msg}");
    assert!(
        msg.contains("does not export `evaluate`") && msg.contains("greet"),
        "{msg}"
    );
}

#[test]
fn other_version_is_refused_with_a_clear_error() {
    // A component for rebound:policy@9.0.0: this host runs 0.3.0, 0.2.0 and 0.1.0 only.
    let path = guest_or_skip!("wrong-version");
    let bytes = std::fs::read(path).unwrap();
    let err =
        PolicyModule::compile(engine(), "future", &bytes, ModuleOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::WrongWorld { .. }), "{msg}");
    assert!(
        msg.contains("targets rebound:policy@9.0.0")
            && msg.contains("rebound:policy/host@9.0.0")
            && msg.contains("0.3.0 (current), 0.2.0, 0.1.0"),
        "{msg}"
    );
}

#[test]
fn forbidden_imports_are_refused_at_load() {
    let path = guest_or_skip!("forbidden-import");
    let bytes = std::fs::read(path).unwrap();
    let err =
        PolicyModule::compile(engine(), "sneaky", &bytes, ModuleOptions::default()).unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::ForbiddenImport { import, .. } => {
            assert!(import.starts_with("acme:exfil/upload"), "{msg}")
        }
        _ => panic!("expected ForbiddenImport, got {msg}"),
    }
}

/// WASI's clocks, file system and sockets are linked (other languages' runtimes import
/// them) and grant nothing: the guest reads the epoch, no file, no variable, reaches no
/// listening socket and no name, and its hour-long sleep is over at once.
#[test]
fn linked_wasi_grants_no_clock_file_network_or_sleep() {
    let path = guest_or_skip!("no-capabilities");
    // A socket that would take the connection, were it allowed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let options = ModuleOptions {
        timeout: Duration::from_secs(2),
        ..with_config(&[("connect", target.as_str())])
    };
    let chain = PolicyChain::new(vec![module("no-capabilities", &path, options)]);
    let d = detection("hello", other());
    let started = Instant::now();
    let v = chain.run(RAW, &d).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let report = v.recipients[0].diagnostic.as_deref().unwrap_or_default();
    assert_eq!(
        report, "clock=0 file=denied env=none tcp=denied dns=denied slept=0",
        "{v:?}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the guest reached the socket");
}

#[test]
fn core_modules_and_other_bytes_are_refused() {
    // The smallest valid core module: the header and nothing else.
    let core = b"\0asm\x01\0\0\0";
    let err = PolicyModule::compile(engine(), "core", core, ModuleOptions::default()).unwrap_err();
    assert!(matches!(err, Error::CoreModule { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component")
    );

    let err = PolicyModule::compile(
        engine(),
        "text",
        b"#!/bin/sh\necho hi\n",
        ModuleOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotWasm { .. }), "{err}");

    // A real core module with an `evaluate` export: `(module (func (export "evaluate")
    // (result i32) i32.const 0))`, as a toolchain without the component step emits.
    let core_evaluate: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header, version 1
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
        0x03, 0x02, 0x01, 0x00, // function 0 has type 0
        0x07, 0x0c, 0x01, 0x08, b'e', b'v', b'a', b'l', b'u', b'a', b't', b'e', 0x00,
        0x00, // export
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b, // code: i32.const 0
    ];
    let err = PolicyModule::compile(engine(), "core", core_evaluate, ModuleOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::CoreModule { .. }), "{err}");
    assert!(
        wasmtime::Module::new(engine().engine(), core_evaluate).is_ok(),
        "the fixture is a valid core module"
    );

    // A component header with garbage after it.
    let err = PolicyModule::compile(
        engine(),
        "junk",
        b"\0asm\x0d\0\x01\0garbage",
        ModuleOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
}

#[test]
fn precompiled_code_is_refused_and_the_cache_is_used() {
    let path = guest_or_skip!("scripted");
    let bytes = std::fs::read(&path).unwrap();
    let cwasm = engine().engine().precompile_component(&bytes).unwrap();
    let err =
        PolicyModule::compile(engine(), "cwasm", &cwasm, ModuleOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Precompiled { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let o = ModuleOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..with_config(&[("action", "append")])
    };
    let first = PolicyModule::compile(engine(), "cached", &bytes, o.clone()).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let t = Instant::now();
    let second = PolicyModule::compile(engine(), "cached", &bytes, o.clone()).unwrap();
    let from_cache = t.elapsed();
    assert_eq!(first.digest(), second.digest());
    let d = detection("x", other());
    let run = PolicyChain::new(vec![std::sync::Arc::new(second)])
        .run_detailed(RAW, &d)
        .unwrap();
    assert_eq!(run.verdict.decided_by, "policy:cached", "{:?}", run.steps);
    assert!(
        from_cache < Duration::from_millis(500),
        "cache hit took {from_cache:?}"
    );

    // A damaged entry is a miss, not a crash.
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "cwasm") {
            std::fs::write(e.path(), b"not code").unwrap();
        }
    }
    let third = PolicyModule::compile(engine(), "cached", &bytes, o).unwrap();
    let v = PolicyChain::new(vec![std::sync::Arc::new(third)])
        .run(RAW, &d)
        .unwrap();
    assert_eq!(v.decided_by, "policy:cached");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn guest_output_goes_to_the_log_tagged_and_bounded() {
    let flood = guest_or_skip!("stderr-flood");
    let panics = guest_or_skip!("panic");
    let o = ModuleOptions {
        timeout: Duration::from_secs(10),
        ..ModuleOptions::default()
    };
    let chain = PolicyChain::new(vec![
        module("flood", &flood, o),
        module("panicky", &panics, ModuleOptions::default()),
    ]);
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        chain.run(RAW, &detection("x", other())).unwrap();
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let flood_lines = text
        .lines()
        .filter(|l| l.contains("rebound::guest") && l.contains("module=\"flood\""))
        .count();
    // 10 000 stderr lines and 10 000 log calls: at most the per-call budget (plus the
    // notice that the budget ran out) reach the log, each line cut to 4 KiB.
    assert!(flood_lines > 0 && flood_lines <= 65, "{flood_lines} lines");
    assert!(
        text.lines().all(|l| l.len() < 4096 + 300),
        "a log line over the cap"
    );
    assert!(text.contains("log limit reached"));
    // The panic message reaches the log with the module's name.
    assert!(
        text.lines()
            .any(|l| l.contains("module=\"panicky\"") && l.contains("no 100th recipient")),
        "{}",
        text.lines()
            .filter(|l| l.contains("panicky"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! Two `rebound serve` processes on one PostgreSQL store, as two hosts (each its own
//! directory and compile cache): a policy uploaded through one host's API is used by the
//! other's `POST /classify` within 5 s, a rollback on the second is seen by the first, and
//! a host started later runs the same chain.

#[path = "policy_support/mod.rs"]
mod policy_support;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/serve.rs"]
mod serve;

use std::time::{Duration, Instant};

use serve::Server;

use policy_support::INVALID_RECIPIENT;

fn host(dir: &std::path::Path, url: &str) -> Server {
    let config = format!(
        "[store]\nurl = \"{url}\"\n[policy_limits]\ntime = \"200ms\"\ncache_dir = \"cache\"\n"
    );
    Server::start(dir, &config, &[])
}

/// Who decides the gateway note on `server`.
fn decided_by(server: &Server) -> String {
    let r = server.request("POST", "/classify", Some(INVALID_RECIPIENT));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["decided_by"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits up to 5 s for `server` to decide the note by `want`; returns how long it took.
fn wait_decided_by(server: &Server, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let got = decided_by(server);
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still decided by {got:?}, not {want:?}, after 5 s; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_policy_uploaded_on_one_host_is_used_by_the_other() {
    let Some(invalid) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let Some(protected) = policy_support::guest("protected-domains") else {
        return;
    };
    if !postgres::available() {
        return;
    }
    let (invalid, protected) = (
        std::fs::read(invalid).unwrap(),
        std::fs::read(protected).unwrap(),
    );
    let url = postgres::database();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host(da.path(), &url);
    let b = host(db.path(), &url);
    assert_eq!(decided_by(&b), "builtin");

    let up = a.request("PUT", "/policies/invalid-recipient", Some(&invalid));
    assert_eq!(up.status, 201, "{}", up.text());
    let took = wait_decided_by(&b, "policy:invalid-recipient");
    eprintln!("host b used host a's upload after {took:?}");

    // A second version through b, rolled back through b: a follows both.
    let v2 = b.request("PUT", "/policies/invalid-recipient", Some(&protected));
    assert_eq!(v2.json()["version"], 2, "{}", v2.text());
    wait_decided_by(&a, "builtin");
    let back = b.request("POST", "/policies/invalid-recipient/rollback", None);
    assert_eq!(back.status, 200, "{}", back.text());
    wait_decided_by(&a, "policy:invalid-recipient");

    // A third host, started now, runs the same chain from the start.
    let dc = tempfile::tempdir().unwrap();
    let c = host(dc.path(), &url);
    assert_eq!(decided_by(&c), "policy:invalid-recipient");
    let list = c.request("GET", "/policies", None).json();
    assert_eq!(list[0]["version"], 1, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

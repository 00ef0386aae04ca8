//! `rebound serve` over HTTP: auth, uploads (valid, invalid, hostile), classify during a
//! swap, rollback, order, restart keeps the policies. Real binary, real components.

#[path = "policy_support/mod.rs"]
mod policy_support;
#[path = "support/serve.rs"]
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serve::{Server, TOKEN};

const CONFIG: &str = r#"
[store]
url = "sqlite://rebound.db"
[api]
data_dir = "policies"
[policy_limits]
time = "200ms"
cache_dir = "cache"
"#;

use policy_support::INVALID_RECIPIENT;

fn guest(name: &str) -> Option<Vec<u8>> {
    policy_support::guest(name).map(|p| std::fs::read(p).expect("reading the guest"))
}

fn start(dir: &std::path::Path) -> Server {
    Server::start(dir, CONFIG, &[])
}

#[test]
fn serve_requires_the_token_except_for_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    assert_eq!(
        server
            .try_request("GET", "/healthz", None, &[])
            .unwrap()
            .status,
        200
    );
    for path in ["/policies", "/metrics", "/recipients", "/campaigns"] {
        let none = server.try_request("GET", path, None, &[]).unwrap();
        assert_eq!(none.status, 401, "{path} without a token");
        assert!(none.json()["error"].as_str().unwrap().contains("token"));
        let wrong = server
            .try_request("GET", path, None, &[("Authorization", "Bearer nope")])
            .unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let almost = format!("Bearer {}x", TOKEN);
        assert_eq!(
            server
                .try_request("GET", path, None, &[("Authorization", &almost)])
                .unwrap()
                .status,
            401
        );
        assert_eq!(
            server.request("GET", path, None).status,
            200,
            "{path} with the token"
        );
    }
    let classify = server
        .try_request("POST", "/classify", Some(INVALID_RECIPIENT), &[])
        .unwrap();
    assert_eq!(classify.status, 401);
}

#[test]
fn serve_refuses_a_public_listen_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rebound.toml"), CONFIG).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir.path())
        .args(["serve", "--config", "rebound.toml", "--listen", "0.0.0.0:0"])
        .env_remove("REBOUND_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
}

#[test]
fn serve_uploads_classifies_rolls_back_and_removes() {
    let Some(invalid_recipient) = guest("invalid-recipient") else {
        return;
    };
    let Some(protected) = guest("protected-domains") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    let before = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(before["decided_by"], "builtin");

    let up = server.request(
        "PUT",
        "/policies/invalid-recipient",
        Some(&invalid_recipient),
    );
    assert_eq!(up.status, 201, "{}", up.text());
    assert_eq!(up.json()["version"], 1);
    let after = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(after["decided_by"], "policy:invalid-recipient", "{after}");
    assert_eq!(after["message_kind"], "bounce");
    assert_eq!(after["recipients"][0]["address"], "jane.doe@example.org");
    assert_eq!(after["recipients"][0]["bounce"], "hard");

    // The policy test route shows the difference.
    let test = server
        .request(
            "POST",
            "/policies/invalid-recipient/test",
            Some(INVALID_RECIPIENT),
        )
        .json();
    assert_eq!(test["changed"], true);
    assert_eq!(test["builtin"]["decided_by"], "builtin");

    // A second module, then the order.
    assert_eq!(
        server
            .request("PUT", "/policies/protected", Some(&protected))
            .status,
        201
    );
    let list = server.request("GET", "/policies", None).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["invalid-recipient", "protected"]);
    let order = br#"{"order": ["protected", "invalid-recipient"]}"#;
    assert_eq!(server.request_json("PUT", "/chain", order).status, 200);
    let list = server.request("GET", "/chain", None).json();
    assert_eq!(list[0]["name"], "protected");
    assert_eq!(list[0]["position"], 1);
    assert_eq!(
        server
            .request_json("PUT", "/chain", br#"{"order": ["protected"]}"#)
            .status,
        400
    );

    // Replace invalid-recipient by another component, then roll back.
    let replaced = server.request("PUT", "/policies/invalid-recipient", Some(&protected));
    assert_eq!(replaced.json()["version"], 2);
    let mid = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(mid["decided_by"], "builtin", "{mid}");
    let back = server.request("POST", "/policies/invalid-recipient/rollback", None);
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["version"], 1);
    let again = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(again["decided_by"], "policy:invalid-recipient");
    assert_eq!(
        server
            .request("POST", "/policies/invalid-recipient/rollback", None)
            .status,
        409
    );

    // Remove.
    assert_eq!(
        server
            .request("DELETE", "/policies/invalid-recipient", None)
            .status,
        204
    );
    assert_eq!(
        server
            .request("DELETE", "/policies/invalid-recipient", None)
            .status,
        404
    );
    let gone = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(gone["decided_by"], "builtin");

    let metrics = server.request("GET", "/metrics", None).text();
    assert!(
        metrics.contains("rebound_messages_total{kind=\"bounce\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rebound_http_requests_total{route=\"/classify\",status=\"200\"}"),
        "{metrics}"
    );
}

#[test]
fn serve_refuses_invalid_components_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let junk = server.request("PUT", "/policies/junk", Some(b"this is not wasm"));
    assert_eq!(junk.status, 422, "{}", junk.text());
    assert!(!junk.json()["error"].as_str().unwrap().is_empty());
    // The smallest core module: magic and version 1.
    let core = server.request("PUT", "/policies/core", Some(b"\0asm\x01\0\0\0"));
    assert_eq!(core.status, 422, "{}", core.text());
    assert!(
        core.json()["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("core"),
        "{}",
        core.text()
    );
    assert_eq!(
        server
            .request("PUT", "/policies/Bad%20Name", Some(b"\0asm"))
            .status,
        400
    );
    if let Some(wrong) = guest("wrong-world") {
        let r = server.request("PUT", "/policies/wrong", Some(&wrong));
        assert_eq!(r.status, 422, "{}", r.text());
    }
    // Nothing was added.
    assert_eq!(
        server.request("GET", "/policies", None).json(),
        serde_json::json!([])
    );
    let too_big = vec![0u8; 64 * 1024 * 1024 + 1];
    assert_eq!(
        server
            .request("PUT", "/policies/big", Some(&too_big))
            .status,
        413
    );
}

#[test]
fn serve_contains_a_hostile_upload() {
    let Some(endless) = guest("endless-loop") else {
        return;
    };
    let Some(bomb) = guest("memory-bomb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    assert_eq!(
        server
            .request("PUT", "/policies/endless", Some(&endless))
            .status,
        201
    );
    assert_eq!(
        server.request("PUT", "/policies/bomb", Some(&bomb)).status,
        201
    );
    for _ in 0..3 {
        let r = server.request("POST", "/classify", Some(INVALID_RECIPIENT));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["decided_by"], "builtin");
    }
    let list = server.request("GET", "/policies", None).json();
    for p in list.as_array().unwrap() {
        assert!(p["failures"].as_u64().unwrap() >= 3, "{p}");
    }
    assert_eq!(
        server
            .try_request("GET", "/healthz", None, &[])
            .unwrap()
            .status,
        200
    );
}

#[test]
fn serve_classifies_without_failure_while_a_policy_is_replaced() {
    let Some(a) = guest("invalid-recipient") else {
        return;
    };
    let Some(b) = guest("protected-domains") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(start(dir.path()));
    assert_eq!(
        server.request("PUT", "/policies/swap", Some(&a)).status,
        201
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (server, stop, done) = (server.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = server.request("POST", "/classify", Some(INVALID_RECIPIENT));
                    assert_eq!(r.status, 200, "{}", r.text());
                    let by = r.json()["decided_by"].as_str().unwrap().to_owned();
                    // Old chain or new chain, never an error and never half.
                    assert!(by == "builtin" || by == "policy:swap", "{by}");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for i in 0..10 {
        let bytes = if i % 2 == 0 { &b } else { &a };
        assert_eq!(
            server.request("PUT", "/policies/swap", Some(bytes)).status,
            201
        );
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client failed");
    }
    assert!(done.load(Ordering::SeqCst) > 10);
}

#[test]
fn serve_keeps_uploaded_policies_across_a_restart() {
    let Some(a) = guest("invalid-recipient") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    assert_eq!(
        server.request("PUT", "/policies/keeper", Some(&a)).status,
        201
    );
    let before = server.request("GET", "/policies", None).json();
    assert!(server.terminate().success(), "{}", server.log());
    drop(server);

    let server = start(dir.path());
    let after = server.request("GET", "/policies", None).json();
    assert_eq!(after[0]["name"], before[0]["name"]);
    assert_eq!(after[0]["digest"], before[0]["digest"]);
    let r = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(r["decided_by"], "policy:keeper");
}

#[test]
fn serve_remembers_a_removed_config_policy_across_a_restart() {
    let Some(path) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{CONFIG}[[policy]]\nname = \"from-config\"\npath = \"{}\"\n",
        path.display()
    );
    let mut server = Server::start(dir.path(), &config, &[]);
    let list = server.request("GET", "/policies", None).json();
    assert_eq!(list[0]["name"], "from-config");
    assert_eq!(list[0]["from_config"], true);
    assert_eq!(
        server
            .request("DELETE", "/policies/from-config", None)
            .status,
        204
    );
    assert!(server.terminate().success());
    drop(server);

    let server = Server::start(dir.path(), &config, &[]);
    assert_eq!(
        server.request("GET", "/policies", None).json(),
        serde_json::json!([])
    );
    let r = server
        .request("POST", "/classify", Some(INVALID_RECIPIENT))
        .json();
    assert_eq!(r["decided_by"], "builtin");
}

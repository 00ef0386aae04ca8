//! `rebound serve`'s errors as a newcomer meets them: JSON bodies for an unknown route, a
//! wrong method and a too-large upload; a missing `[[policy]]` file named with its policy;
//! plain (colourless) log lines in a log file. Real binary, real server helper.

#[path = "support/serve.rs"]
mod serve;

use serve::Server;

const CONFIG: &str = r#"
[store]
url = "sqlite://rebound.db"
[api]
data_dir = "policies"
max_upload = "1KB"
[policy_limits]
cache_dir = "cache"
"#;

#[test]
fn serve_answers_unknown_routes_and_wrong_methods_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG, &[]);
    for path in ["/nope", "/policies/x/nope", "/"] {
        let r = server.request("GET", path, None);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {}",
            r.text()
        );
    }
    // Without a token too: an unknown route is not a secret.
    let r = server.try_request("GET", "/nope", None, &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());

    let r = server.request("DELETE", "/classify", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"], "method not allowed");
}

#[test]
fn serve_refuses_a_too_large_upload_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG, &[]);
    let big = vec![b'x'; 4096];
    for path in ["/classify", "/policies/big"] {
        let method = if path == "/classify" { "POST" } else { "PUT" };
        let r = server.request(method, path, Some(&big));
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.contains("1000 bytes") && error.contains("max_upload"),
            "{error}"
        );
    }
    // Under the limit the same route works.
    let r = server.request("POST", "/classify", Some(b"Subject: hi\n\nhello\n"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn serve_names_the_policy_whose_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("{CONFIG}\n[[policy]]\nname = \"gone\"\npath = \"policies-src/gone.wasm\"\n");
    std::fs::write(dir.path().join("rebound.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--config",
            "rebound.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("REBOUND_API_TOKEN", serve::TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy \"gone\""), "{err}");
    assert!(err.contains("policies-src/gone.wasm"), "{err}");
    assert!(!err.contains("data directory"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn serve_logs_without_colour_codes_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG, &[]);
    let log = server.log();
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file: {log:?}"
    );
}

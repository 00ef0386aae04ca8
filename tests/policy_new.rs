//! `rebound policy new`: the crate it writes, outside the repository, builds for
//! wasm32-wasip2 and changes the verdict of the sample it comes with. Real binary, real
//! cargo (crates.io must be reachable, or wit-bindgen already in cargo's cache).

#[path = "support/serve.rs"]
mod serve;
#[path = "support/skip.rs"]
mod skip;

use std::path::Path;
use std::process::Command;

#[test]
fn policy_new_writes_a_crate_that_builds_and_changes_its_sample() {
    let have_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        });
    if !have_target {
        skip::skip_current(
            "the wasm32-wasip2 target is not installed (rustup target add wasm32-wasip2)",
        );
        return;
    }
    // A temporary directory is outside the repository: nothing may lean on its layout.
    let tmp = tempfile::tempdir().unwrap();
    let crate_dir = tmp.path().join("closed-mailbox-it");
    let rebound = env!("CARGO_BIN_EXE_rebound");
    let out = Command::new(rebound)
        .current_dir(tmp.path())
        .args(["policy", "new", "closed-mailbox-it"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        "samples/closed-mailbox.eml",
        "vendor/sdk/Cargo.toml",
    ] {
        assert!(crate_dir.join(f).is_file(), "{f} not written");
    }
    // A second run refuses to write over it.
    let again = Command::new(rebound)
        .current_dir(tmp.path())
        .args(["policy", "new", "closed-mailbox-it"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    // The repository's guest target dir: wit-bindgen is compiled there already.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/guests");
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&crate_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{log}");
    // (Not RUSTFLAGS=-D warnings: that would rebuild every dependency in the shared dir.)
    assert!(
        !log.contains("warning"),
        "the template builds with warnings:\n{log}"
    );
    let wasm = target.join("wasm32-wasip2/release/closed_mailbox_it.wasm");
    assert!(wasm.is_file());

    let test = Command::new(rebound)
        .current_dir(&crate_dir)
        .args(["policy", "test", wasm.to_str().unwrap(), "samples/"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        text.contains("1 messages: 1 changed by closed-mailbox-it, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("+ sam.jones@example.net hard 5.1.1 user-unknown"),
        "{text}"
    );
}

/// The Python author's path, outside the repository: `rebound policy new --python`, the
/// component built with componentize-py (from the test environment, `make test-deps`),
/// `rebound policy test` on its sample, then uploaded to a real `rebound serve`, whose
/// `/classify` then decides the sample with it.
#[test]
fn policy_new_python_builds_changes_its_sample_and_uploads() {
    let Some(componentize) = std::env::var_os("REBOUND_PYTHON")
        .map(std::path::PathBuf::from)
        .and_then(|py| py.parent().map(|bin| bin.join("componentize-py")))
        .filter(|p| p.is_file())
    else {
        skip::skip_current(
            "componentize-py is not in the test environment (REBOUND_PYTHON unset or without it): run make test-deps",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("closed-py");
    let rebound = env!("CARGO_BIN_EXE_rebound");
    let out = Command::new(rebound)
        .current_dir(tmp.path())
        .args(["policy", "new", "--python", "closed-py"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
    let policy_lines = app
        .lines()
        .skip_while(|l| !l.starts_with("def evaluate"))
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(
        policy_lines <= 15,
        "the template's policy is {policy_lines} lines"
    );

    let build = Command::new(&componentize)
        .current_dir(&dir)
        .args([
            "-d",
            "wit",
            "-w",
            "policy",
            "componentize",
            "app",
            "-o",
            "closed_py.wasm",
        ])
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let test = Command::new(rebound)
        .current_dir(&dir)
        .args(["policy", "test", "closed_py.wasm", "samples/"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        text.contains("1 messages: 1 changed by closed-py, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("+ sam.jones@example.net hard 5.1.1 user-unknown"),
        "{text}"
    );

    let home = tempfile::tempdir().unwrap();
    let server = serve::Server::start(home.path(), "[store]\nurl = \"sqlite://rebound.db\"\n", &[]);
    let wasm = std::fs::read(dir.join("closed_py.wasm")).unwrap();
    let up = server.request("PUT", "/policies/closed-py", Some(&wasm));
    assert_eq!(up.status, 201, "{}", up.text());
    let sample = std::fs::read(dir.join("samples/closed-mailbox.eml")).unwrap();
    let after = server.request("POST", "/classify", Some(&sample)).json();
    assert_eq!(after["decided_by"], "policy:closed-py", "{after}");
    assert_eq!(after["recipients"][0]["bounce"], "hard", "{after}");
}

//! `rebound check-config` fails fast on what the daemon would fail on later.

#[path = "policy_support/mod.rs"]
mod policy_support;

use std::process::Command;

fn check(dir: &std::path::Path, config: &str) -> (bool, String) {
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir)
        .args(["--config", "rebound.toml", "check-config"])
        .env_remove("REBOUND_POP3_PASSWORD")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_compiles_policies_and_opens_the_store() {
    let Some(guest) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "[store]\nurl = \"sqlite://r.db\"\n[policy_limits]\ncache_dir = \"cache\"\n[[policy]]\nname = \"ir\"\npath = \"{}\"\n",
        guest.display()
    );
    let (ok, text) = check(dir.path(), &good);
    assert!(ok, "{text}");
    assert!(text.contains("policy ir: ok"), "{text}");

    let (ok, text) = check(
        dir.path(),
        "[[policy]]\nname = \"x\"\npath = \"missing.wasm\"\n",
    );
    assert!(!ok);
    assert!(text.contains("missing.wasm"), "{text}");

    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    let (ok, text) = check(
        dir.path(),
        "[[policy]]\nname = \"x\"\npath = \"junk.wasm\"\n",
    );
    assert!(!ok, "{text}");

    let (ok, text) = check(dir.path(), "[store]\nurll = \"x\"\n");
    assert!(!ok);
    assert!(text.contains("urll"), "{text}");

    let pop3 = "[store]\nurl = \"sqlite://r.db\"\n[pop3]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"\npassword_env = \"REBOUND_POP3_PASSWORD\"\n";
    let (ok, text) = check(dir.path(), pop3);
    assert!(!ok);
    assert!(text.contains("REBOUND_POP3_PASSWORD"), "{text}");
}

#[test]
fn check_config_accepts_max_fetch_failures() {
    let dir = tempfile::tempdir().unwrap();
    let pop3 = "[store]\nurl = \"sqlite://r.db\"\n[pop3]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"\npassword_env = \"REBOUND_POP3_PASSWORD\"\n";
    // Only the missing password is wrong, not the key.
    let (ok, text) = check(dir.path(), &format!("{pop3}max_fetch_failures = 5\n"));
    assert!(!ok);
    assert!(
        text.contains("REBOUND_POP3_PASSWORD") && !text.contains("max_fetch_failures"),
        "{text}"
    );
    let (ok, text) = check(dir.path(), &format!("{pop3}max_fetch_failure = 5\n"));
    assert!(!ok);
    assert!(text.contains("max_fetch_failure"), "{text}");
}

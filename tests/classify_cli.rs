//! `rebound classify` as a newcomer runs it: the same output on one thread or many, a
//! note for an empty directory, the config's policy chain, the compile cache, and error
//! messages that say each thing once. Real binary.

// Both helpers include support/skip.rs; two copies of it are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "support/corpus.rs"]
mod corpus;

#[path = "policy_support/mod.rs"]
mod policy_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn rebound(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.current_dir(dir).args(args).env_remove("REBOUND_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running rebound")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with the samples, a nested copy, and an mbox of 300 messages (the samples
/// over and over), so that the work is shared out and the order has to be restored.
fn mixed_input() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut mbox = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(samples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    for (i, p) in names.iter().cycle().take(300).enumerate() {
        let raw = std::fs::read(p).unwrap();
        if i < names.len() {
            let name = p.file_name().unwrap();
            std::fs::write(dir.path().join(name), &raw).unwrap();
            std::fs::write(dir.path().join("nested").join(name), &raw).unwrap();
        }
        mbox.extend_from_slice(
            format!("From sender{i}@example.org Mon Mar  2 10:00:00 2026\n").as_bytes(),
        );
        mbox.extend_from_slice(
            &raw.iter()
                .copied()
                .filter(|&b| b != b'\r')
                .collect::<Vec<u8>>(),
        );
        mbox.extend_from_slice(b"\n\n");
    }
    std::fs::write(dir.path().join("m.mbox"), mbox).unwrap();
    dir
}

#[test]
fn classify_gives_the_same_output_on_one_thread_and_on_many() {
    let input = mixed_input();
    let mut dirs = vec![input.path().to_owned()];
    if let Some(c) = corpus::labelled() {
        dirs.push(c);
    }
    for dir in dirs {
        let d = dir.to_str().unwrap();
        let one = rebound(&dir, &["classify", "-j", "1", d], &[]);
        assert!(one.status.success(), "{}", stderr(&one));
        for jobs in ["2", "7"] {
            let many = rebound(&dir, &["classify", "-j", jobs, d], &[]);
            assert!(many.status.success(), "{}", stderr(&many));
            assert!(
                stdout(&one) == stdout(&many),
                "-j {jobs} differs from -j 1 on {d}"
            );
        }
        // Every message got its line, in input order: mbox messages numbered in sequence.
        let lines: Vec<serde_json::Value> = stdout(&one)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if dir == input.path() {
            assert_eq!(lines.len(), 6 + 6 + 300);
            let mbox: Vec<&str> = lines
                .iter()
                .filter_map(|l| l["source"].as_str())
                .filter(|s| s.starts_with("m.mbox#"))
                .collect();
            let expected: Vec<String> = (1..=300).map(|i| format!("m.mbox#{i}")).collect();
            assert_eq!(mbox, expected);
        }
    }
}

#[test]
fn classify_says_when_a_directory_has_no_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("empty/.hidden"), "x").unwrap();
    let out = rebound(dir.path(), &["classify", "empty"], &[]);
    assert!(out.status.success(), "an empty spool is not an error");
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("no messages found in empty"),
        "{}",
        stderr(&out)
    );

    // Beside a directory that has messages, only the empty one is named.
    let s = samples();
    let out = rebound(dir.path(), &["classify", "empty", s.to_str().unwrap()], &[]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 6);
    assert_eq!(stderr(&out).matches("no messages found").count(), 1);
}

#[test]
fn classify_names_a_missing_policy_file_and_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples();
    let out = rebound(
        dir.path(),
        &["classify", "--policy", "missing.wasm", s.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("missing.wasm"), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );

    let out = rebound(
        dir.path(),
        &["--config", "nope.toml", "classify", s.to_str().unwrap()],
        &[],
    );
    let text = stderr(&out);
    assert!(text.contains("nope.toml"), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
}

/// A plain-text note the built-in detector cannot be sure of; invalid-recipient is.
const INVALID_RECIPIENT: &str = "From: MAILER-DAEMON@gateway.example.net\n\
To: bounces@example.com\n\
Subject: Undeliverable mail\n\
\n\
Your message could not be delivered.\n\
Invalid recipient: <jane.doe@example.org>\n";

#[test]
fn classify_runs_the_config_chain_and_caches_its_compiled_code() {
    let Some(guest) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.eml"), INVALID_RECIPIENT).unwrap();
    std::fs::write(
        dir.path().join("rebound.toml"),
        format!(
            "[[policy]]\nname = \"ir\"\npath = \"{}\"\n[policy_limits]\ncache_dir = \"daemon-cache\"\n",
            guest.display()
        ),
    )
    .unwrap();
    let xdg = dir.path().join("xdg");
    let env = [
        ("XDG_CACHE_HOME", xdg.to_str().unwrap()),
        ("REBOUND_LOG", "rebound::policy=debug"),
    ];
    let args = ["--config", "rebound.toml", "classify", "note.eml"];

    let first = rebound(dir.path(), &args, &env);
    assert!(first.status.success(), "{}", stderr(&first));
    let record: serde_json::Value = serde_json::from_str(stdout(&first).trim()).unwrap();
    assert_eq!(record["decided_by"], "policy:ir", "the config's chain ran");
    assert!(!stderr(&first).contains("from cache"), "{}", stderr(&first));
    let entries = |d: &Path| -> usize {
        std::fs::read_dir(d).map_or(0, |r| {
            r.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            })
            .count()
        })
    };
    assert_eq!(
        entries(&xdg.join("rebound")),
        1,
        "cached in the per-user directory"
    );
    assert!(
        !dir.path().join("daemon-cache").exists(),
        "not in the daemon's"
    );

    let again = rebound(dir.path(), &args, &env);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("compiled code from cache"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&again), stdout(&first));

    // --policy replaces the config's chain, and --cache-dir moves the cache.
    let g = guest.to_str().unwrap();
    let other = dir.path().join("other");
    let out = rebound(
        dir.path(),
        &[
            "classify",
            "--policy",
            g,
            "--cache-dir",
            other.to_str().unwrap(),
            "note.eml",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(record["decided_by"], "policy:invalid-recipient");
    assert_eq!(entries(&other), 1);
}

//! `rebound policy new NAME`: writes a policy crate that builds anywhere — the guest SDK
//! and the WIT this binary was built with (embedded by `build.rs`) as a path dependency
//! under `vendor/`, a working `src/lib.rs`, a sample bounce it changes, a unit test and a
//! README (`cargo generate` / `spin new` are the precedent).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/policy_template_files.rs"));
}

/// Arguments of `rebound policy new`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The policy's name: the crate name, and the `.wasm` file's stem (a-z, 0-9, `-`, `_`).
    name: String,
    /// Where to write the crate [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A Python policy (built with componentize-py) instead of a Rust crate.
    #[arg(long)]
    python: bool,
}

/// Where the SDK and the WIT go inside the new crate; they keep the repository's layout
/// (`sdk/` beside `wit/`), so the SDK finds its WIT by the same relative path.
const VENDOR: &str = "vendor";

const SAMPLE: &str = "samples/closed-mailbox.eml";

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let lib = args.name.replace('-', "_");
    if args.python {
        for (path, contents) in python_files(&args.name) {
            write(&dir.join(&path), contents.as_ref())?;
        }
        println!("created Python policy {} in {}", args.name, dir.display());
        println!();
        println!("  cd {}", dir.display());
        println!("  pip install componentize-py=={COMPONENTIZE_PY}");
        println!("  componentize-py -d wit -w policy componentize app -o {lib}.wasm");
        println!("  rebound policy test {lib}.wasm {SAMPLE}   # the sample, before → after");
        return Ok(ExitCode::SUCCESS);
    }
    for (path, contents) in files(&args.name) {
        write(&dir.join(&path), contents.as_ref())?;
    }
    println!("created policy {} in {}", args.name, dir.display());
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo build --release --target wasm32-wasip2");
    println!(
        "  rebound policy test target/wasm32-wasip2/release/{lib}.wasm {SAMPLE}   # the sample, before → after"
    );
    Ok(ExitCode::SUCCESS)
}

/// Crate names cargo accepts and the registry's policy names allow.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid policy name {name:?}: start with a-z, then a-z, 0-9, '-' or '_' (at most 64)"
        );
    }
    Ok(())
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Every file of the new crate, relative to its directory.
fn files(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = vec![
        ("Cargo.toml".into(), cargo_toml(name).into_bytes()),
        ("src/lib.rs".into(), LIB_RS.as_bytes().to_vec()),
        (SAMPLE.into(), SAMPLE_EML.as_bytes().to_vec()),
        ("README.md".into(), readme(name).into_bytes()),
        (".gitignore".into(), b"/target\n".to_vec()),
    ];
    for (path, contents) in embedded::FILES {
        out.push((Path::new(VENDOR).join(path), contents.to_vec()));
        // The SDK's lock file pins the versions it is tested with: the new crate starts
        // from it (cargo adds the crate itself), so a build needs no newer downloads.
        if *path == "sdk/Cargo.lock" {
            out.push(("Cargo.lock".into(), contents.to_vec()));
        }
    }
    out
}

/// The componentize-py release the Python template and `make guests-python` are tested
/// with.
const COMPONENTIZE_PY: &str = "0.25.1";

/// A Python policy: `app.py`, the SDK module beside it, the WIT world in `wit/`, the sample
/// and a README.
fn python_files(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = vec![
        ("app.py".into(), APP_PY.as_bytes().to_vec()),
        (SAMPLE.into(), SAMPLE_EML.as_bytes().to_vec()),
        ("README.md".into(), python_readme(name).into_bytes()),
        (".gitignore".into(), b"*.wasm\n__pycache__/\n".to_vec()),
    ];
    for (path, contents) in embedded::FILES {
        if path.starts_with("wit/") {
            out.push((PathBuf::from(path), contents.to_vec()));
        } else if *path == "sdk/python/rebound_policy.py" {
            out.push(("rebound_policy.py".into(), contents.to_vec()));
        }
    }
    out
}

fn python_readme(name: &str) -> String {
    let lib = name.replace('-', "_");
    format!(
        r#"# {name}

A [rebound](https://example.invalid/rebound) bounce policy in Python, written by
`rebound policy new --python`.

`app.py` turns a bounce that says the mailbox was *closed by its owner* into a hard bounce
(`user-unknown`, `5.1.1`) for the recipient it names (the built-in detector calls such a
message soft: the text gives no code). `config` `phrase = "…"` changes the phrase.
`rebound_policy.py` is the SDK (the same helpers as the Rust one); `wit/` is the world of
the rebound that wrote this directory.

```sh
pip install componentize-py=={COMPONENTIZE_PY}
componentize-py -d wit -w policy componentize app -o {lib}.wasm
rebound policy test {lib}.wasm {SAMPLE}
```

Then add it to `rebound.toml` (`[[policy]] name = "{name}"`, `path = "{lib}.wasm"`) or
upload it to a running `rebound serve`:
`curl -H "Authorization: Bearer $TOKEN" -X PUT --data-binary @{lib}.wasm http://127.0.0.1:8025/policies/{name}`.
The component holds CPython (about 18 MB): its first load compiles for a few seconds, later
loads come from rebound's compile cache.
"#
    )
}

/// The Python policy of the template: the same as the Rust one's, in 13 lines.
const APP_PY: &str = r#""""A bounce that says the mailbox was closed by its owner is a hard bounce."""
import rebound_policy as rp


def evaluate(message, current):
    phrase = rp.config("phrase") or "closed by its owner"
    if not rp.contains(message.text(), phrase):
        return rp.keep()
    addresses = [r.address for r in current.recipients] or rp.find_addresses(message.text())[:1]
    if not addresses:
        raise rp.PolicyError("the mailbox is closed, but no recipient is named")
    rp.info("closed mailbox: " + ", ".join(addresses))
    hard = [rp.hard_bounce(a, rp.Reason.USER_UNKNOWN, "5.1.1", phrase) for a in addresses]
    return rp.replace(rp.Verdict(kind=rp.MessageKind.BOUNCE, recipients=hard, decided_by=""))


WitWorld = rp.policy(evaluate)
"#;

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: so `cargo test` runs the unit tests on the host.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK and WIT of the rebound that wrote this crate (it is not on crates.io).
rebound-sdk = {{ path = "{VENDOR}/sdk" }}

# A workspace of its own, so it builds wherever it is put.
[workspace]
exclude = ["{VENDOR}"]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
debug = false
strip = true
"#
    )
}

fn readme(name: &str) -> String {
    let lib = name.replace('-', "_");
    format!(
        r#"# {name}

A [rebound](https://example.invalid/rebound) bounce policy, written by `rebound policy new`.

`src/lib.rs` turns a bounce that says the mailbox was *closed by its owner* into a hard
bounce (`user-unknown`, `5.1.1`) for the recipient it names: the built-in detector calls
such a message soft, because the text gives no code. The phrase can be changed with the
policy's `config` (`phrase = "…"`). Change the code to what your own bounces need.

```sh
cargo test                                          # the unit test, on the host
cargo build --release --target wasm32-wasip2        # the component
rebound policy test target/wasm32-wasip2/release/{lib}.wasm {SAMPLE}
rebound policy test --set phrase="account deleted" target/wasm32-wasip2/release/{lib}.wasm bounces/
```

`rebound policy test` shows, message by message, the built-in verdict and what the policy
made of it. To run it for real, add it to `rebound.toml`:

```toml
[[policy]]
name = "{name}"
path = "target/wasm32-wasip2/release/{lib}.wasm"
config = {{ phrase = "closed by its owner" }}
```

or upload it to a running `rebound serve`:
`curl -H "Authorization: Bearer $TOKEN" -X PUT --data-binary @target/wasm32-wasip2/release/{lib}.wasm http://127.0.0.1:8025/policies/{name}`.

`{VENDOR}/` holds the guest SDK (`rebound-sdk`, see `{VENDOR}/sdk/README.md`) and the WIT world
(`{VENDOR}/wit/`) of the rebound version that wrote this crate; the policy must match the
world of the rebound that loads it (`rebound policy check` says).
"#
    )
}

/// The policy: small, warning-free, and using what most policies need (the text, the
/// current verdict, config, the verdict builders).
const LIB_RS: &str = r#"//! A bounce that says the mailbox was closed by its owner is a hard bounce.

use rebound_sdk::{Decision, Message, Policy, PolicyError, Reason, RecipientVerdict, Verdict};

/// The phrase that marks such a bounce, unless the policy's `config` sets `phrase`.
const DEFAULT_PHRASE: &str = "closed by its owner";

struct ClosedMailbox;

impl Policy for ClosedMailbox {
    fn evaluate(message: &Message, current: Verdict) -> Result<Decision, PolicyError> {
        let phrase = rebound_sdk::config("phrase").unwrap_or_else(|| DEFAULT_PHRASE.to_owned());
        if !says_closed(message.text(), &phrase) {
            return Ok(Decision::Keep);
        }
        // The recipients the built-in detector found, else the first address in the text.
        let mut addresses: Vec<String> =
            current.recipients.iter().map(|r| r.address.clone()).collect();
        if addresses.is_empty() {
            addresses.extend(rebound_sdk::find_addresses(message.text()).into_iter().take(1));
        }
        if addresses.is_empty() {
            return Err(PolicyError::new("the mailbox is closed, but no recipient is named"));
        }
        rebound_sdk::info(&format!("closed mailbox: {}", addresses.join(", ")));
        let recipients = addresses
            .iter()
            .map(|a| {
                RecipientVerdict::new(a, Reason::UserUnknown)
                    .with_status("5.1.1")
                    .with_diagnostic(&phrase)
                    .hard()
            })
            .collect();
        Ok(Decision::Replace(Verdict::bounce(recipients)))
    }
}

/// True when `text` contains `phrase`, ignoring case; kept apart from `evaluate` so it can
/// be tested on the host.
fn says_closed(text: &str, phrase: &str) -> bool {
    !phrase.is_empty() && rebound_sdk::contains_ignore_case(text, phrase)
}

rebound_sdk::export!(ClosedMailbox);

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sample_says_closed_and_ordinary_text_does_not() {
        let sample = include_str!("../samples/closed-mailbox.eml");
        assert!(says_closed(sample, DEFAULT_PHRASE));
        assert!(says_closed("The Mailbox was CLOSED BY ITS OWNER.", DEFAULT_PHRASE));
        assert!(!says_closed("Mailbox full, try again later.", DEFAULT_PHRASE));
        assert!(!says_closed(sample, ""));
    }
}
"#;

/// A made-up plain-text bounce (no delivery report, no status code), written for this
/// template: the built-in detector reads it as a soft bounce.
const SAMPLE_EML: &str = "Return-Path: <>\r\n\
From: Mail Delivery Subsystem <postmaster@mx.example.net>\r\n\
To: bounces@news.example.com\r\n\
Subject: Returned mail: delivery problem\r\n\
Date: Tue, 01 Dec 2026 09:30:00 +0000\r\n\
Message-ID: <returned-20261201093000@mx.example.net>\r\n\
Auto-Submitted: auto-replied\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at mx.example.net.\r\n\
\r\n\
Your message could not be delivered to the following recipient:\r\n\
\r\n\
    <sam.jones@example.net>\r\n\
\r\n\
The mailbox was closed by its owner and accepts no more mail.\r\n\
\r\n\
--- Headers of the returned message ---\r\n\
From: News <news@news.example.com>\r\n\
To: sam.jones@example.net\r\n\
Subject: December news\r\n\
Message-ID: <dec-0042@news.example.com>\r\n";

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn new_crate_has_the_sdk_and_wit_beside_each_other() {
        let files = files("my-policy");
        let has = |p: &str| files.iter().any(|(f, _)| f == Path::new(p));
        for p in [
            "Cargo.toml",
            "src/lib.rs",
            SAMPLE,
            "README.md",
            "vendor/sdk/Cargo.toml",
        ] {
            assert!(has(p), "{p} missing");
        }
        assert!(
            files
                .iter()
                .any(|(f, _)| f.starts_with("vendor/wit")
                    && f.extension().is_some_and(|e| e == "wit")),
            "no WIT file"
        );
    }

    #[test]
    fn python_policy_has_the_sdk_module_and_the_wit() {
        let files = python_files("my-policy");
        let has = |p: &str| files.iter().any(|(f, _)| f == Path::new(p));
        for p in [
            "app.py",
            "rebound_policy.py",
            "wit/policy.wit",
            SAMPLE,
            "README.md",
        ] {
            assert!(has(p), "{p} missing");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("closed-mailbox").is_ok());
        assert!(check_name("a_1").is_ok());
        for bad in ["", "1abc", "Abc", "a b", "../x", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

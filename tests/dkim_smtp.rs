//! DKIM through the real test SMTP server (aiosmtpd): `rebound send` with `[smtp.dkim]`
//! signs every message, and an independent verifier (dkimpy, with the public key served
//! by its `dnsfunc` instead of DNS) accepts each one — and rejects it once altered, or
//! under another key. Keys are made by `openssl genpkey` in the test. Also: the errors
//! of `check-config` and `send` for a key that is missing or not a supported key.

// smtp.rs includes support/skip.rs too; two copies of it are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

fn rebound(dir: &Path, args: &[&str]) -> std::process::Output {
    cli::rebound(dir, args, &[("REBOUND_VERP_SECRET", "test-secret")])
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new private key (`genpkey` writes PKCS#8) in `dir/name.pem`.
fn genkey(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let p = path.to_str().unwrap();
    match kind {
        "rsa" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p,
        ]),
        "ed25519" => openssl(&["genpkey", "-algorithm", "ED25519", "-out", p]),
        _ => unreachable!(),
    };
    path
}

/// The DKIM TXT record of a key, from openssl's public key (DER SubjectPublicKeyInfo):
/// RSA publishes the whole SPKI, Ed25519 the raw 32-byte key (RFC 8463 §4.2).
fn txt_record(key: &Path, kind: &str) -> String {
    let spki = openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let p = match kind {
        "rsa" => &spki[..],
        _ => &spki[spki.len() - 32..],
    };
    let p = base64::engine::general_purpose::STANDARD.encode(p);
    format!("v=DKIM1; k={kind}; p={p}")
}

/// Can the Python of the test server verify DKIM (dkimpy, PyNaCl for Ed25519)?
fn dkimpy() -> bool {
    let ok = Command::new(smtp::python())
        .args(["-c", "import dkim, nacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip::skipped(
            &skip::current_test(),
            &format!(
                "dkimpy (with PyNaCl) is not importable by {} (`make test-deps` installs it)",
                smtp::python().display()
            ),
        );
    }
    ok
}

/// For every message file: does it verify under `txt`, does it still verify with its
/// Subject or its List-Unsubscribe link altered, and under `wrong_txt`? dkimpy asks `dnsfunc` for the record; any
/// name but the expected one gets nothing.
const VERIFY: &str = r#"
import json, sys, dkim
args = json.load(open(sys.argv[1]))
def dns(txt):
    def f(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return txt.encode() if n.rstrip(".") == args["name"] else None
    return f
out = []
for path in args["files"]:
    msg = open(path, "rb").read()
    altered = msg.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
    unsub = msg.replace(b"https://rebound.example.org/u/", b"https://rebound.example.net/u/", 1)
    assert altered != msg and unsub != msg
    out.append({
        "ok": dkim.verify(msg, dnsfunc=dns(args["txt"])),
        "altered": dkim.verify(altered, dnsfunc=dns(args["txt"])),
        "unsubscribe_altered": dkim.verify(unsub, dnsfunc=dns(args["txt"])),
        "wrong_key": dkim.verify(msg, dnsfunc=dns(args["wrong_txt"])),
    })
print(json.dumps(out))
"#;

fn verify(dir: &Path, name: &str, txt: &str, wrong_txt: &str, files: &[PathBuf]) -> Vec<Value> {
    let args = dir.join("verify.json");
    std::fs::write(
        &args,
        json!({"name": name, "txt": txt, "wrong_txt": wrong_txt, "files": files}).to_string(),
    )
    .unwrap();
    let out = Command::new(smtp::python())
        .arg("-c")
        .arg(VERIFY)
        .arg(&args)
        .output()
        .expect("running dkimpy");
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn config(dir: &Path, port: u16, dkim: &str) {
    let config = format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls = \"none\"\nfrom = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n\
         \n[smtp.dkim]\n{dkim}\n\n[api]\npublic_url = \"https://rebound.example.org\"\n",
        dir.display()
    );
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
}

fn send_signed(kind: &str) {
    if smtp::skip() || !dkimpy() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = genkey(dir, "key", kind);
    let other = genkey(dir, "other", kind);
    config(
        dir,
        server.port,
        &format!(
            "domain = \"example.org\"\nselector = \"s2026\"\nprivate_key_file = \"{}\"",
            key.display()
        ),
    );
    let recipients: Vec<String> = (0..6).map(|i| format!("r{i}@example.com")).collect();
    std::fs::write(dir.join("list.txt"), recipients.join("\n")).unwrap();
    // A non-ASCII subject long enough to be encoded and folded: what relaxed header
    // canonicalization has to get right.
    std::fs::write(
        dir.join("campaign.toml"),
        "name = \"signed\"\nsubject = \"Les nouvelles de l'été : tout ce qui s'est passé \
         en novembre, et ce qui vient en décembre\"\n\
         text = \"Hello  from rebound.\\n\\n\\n\"\nhtml = \"<p>Hello from rebound.</p>\"\n\
         [recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    let out = rebound(
        dir,
        &[
            "send",
            "--quiet",
            "--campaign",
            dir.join("campaign.toml").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "send failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let received = server.received();
    assert_eq!(received.len(), recipients.len(), "{}", server.log());

    let algorithm = if kind == "rsa" {
        "a=rsa-sha256;"
    } else {
        "a=ed25519-sha256;"
    };
    let files: Vec<PathBuf> = received
        .iter()
        .map(|r| {
            let path = dir.join(format!("msg-{}.eml", r.rcpt_tos[0]));
            let bytes = server.message(r);
            let text = String::from_utf8_lossy(&bytes);
            let sig = text
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .split("\r\nDKIM-Signature: ")
                .nth(1)
                .unwrap_or_else(|| panic!("no DKIM-Signature in {text}"));
            for header in [
                "\r\nList-Unsubscribe: <https://rebound.example.org/u/",
                "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                "\r\nFeedback-ID: ",
            ] {
                assert!(text.contains(header), "{header} not in {text}");
            }
            for tag in [
                algorithm,
                "d=example.org;",
                "s=s2026;",
                "c=relaxed/relaxed;",
                "h=from:to:subject:date:message-id:mime-version:list-unsubscribe:list-unsubscribe-post:feedback-id;",
            ] {
                assert!(sig.contains(tag), "{tag} not in {sig}");
            }
            std::fs::write(&path, &bytes).unwrap();
            path
        })
        .collect();
    let results = verify(
        dir,
        "s2026._domainkey.example.org",
        &txt_record(&key, kind),
        &txt_record(&other, kind),
        &files,
    );
    assert_eq!(results.len(), files.len());
    for (r, f) in results.iter().zip(&files) {
        assert_eq!(
            r,
            &json!({
                "ok": true,
                "altered": false,
                "unsubscribe_altered": false,
                "wrong_key": false
            }),
            "{}",
            f.display()
        );
    }
}

#[test]
fn dkim_rsa_signatures_verify_with_dkimpy() {
    send_signed("rsa");
}

#[test]
fn dkim_ed25519_signatures_verify_with_dkimpy() {
    send_signed("ed25519");
}

/// `check-config` and `send` refuse a missing or unsupported key, naming the file, and
/// `send` sends nothing then.
#[test]
fn dkim_bad_keys_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let rsa = genkey(dir, "rsa", "rsa");
    // PKCS#1 ("RSA PRIVATE KEY") as well as genpkey's PKCS#8.
    let pkcs1 = dir.join("pkcs1.pem");
    openssl(&[
        "pkey",
        "-in",
        rsa.to_str().unwrap(),
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    let small = dir.join("small.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:512",
        "-out",
        small.to_str().unwrap(),
    ]);
    let ec = dir.join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        ec.to_str().unwrap(),
    ]);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let missing = dir.join("missing.pem");
    let dkim = |key: &Path| {
        format!(
            "domain = \"example.org\"\nselector = \"s1\"\nprivate_key_file = \"{}\"",
            key.display()
        )
    };

    for (key, bits) in [(&rsa, 2048), (&pkcs1, 2048)] {
        config(dir, 2525, &dkim(key));
        let out = rebound(dir, &["check-config"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "dkim s1._domainkey.example.org: ok (rsa-sha256, {bits}-bit key)"
            )),
            "{stdout}"
        );
    }
    let ed = genkey(dir, "ed", "ed25519");
    config(dir, 2525, &dkim(&ed));
    let out = rebound(dir, &["check-config"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(ed25519-sha256, 256-bit key)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (key, want) in [
        (&missing, "reading the DKIM key".to_owned()),
        (&junk, "not a PEM key".to_owned()),
        (&small, "an RSA key of 512 bits".to_owned()),
        (
            &ec,
            "a key of algorithm 1.2.840.10045.2.1, not RSA or Ed25519".to_owned(),
        ),
    ] {
        config(dir, 2525, &dkim(key));
        for args in [
            &["check-config"][..],
            &["send", "--campaign", "nowhere.toml"],
        ] {
            let out = rebound(dir, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} with {}", key.display());
            assert!(
                stderr.contains(&format!("{}", key.display())) && stderr.contains(&want),
                "{args:?}: {want:?} and the file not in {stderr}"
            );
        }
    }

    // A misspelt key is refused like anywhere else in the config.
    config(dir, 2525, &format!("{}\nalgorithm = \"rsa\"", dkim(&rsa)));
    let out = rebound(dir, &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field `algorithm`"), "{stderr}");
}

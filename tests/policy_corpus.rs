//! The example policies on the labelled Sisimai corpus (`REBOUND_CORPUS`, default
//! `../shared/corpus/sisimai`): each changes exactly the verdicts it should, and the
//! verdicts it changes agree with the corpus labels (`truth.tsv`).
//!
//! Under `CI=true` a missing corpus or missing guest components fail; elsewhere the tests
//! say they skipped.

#[path = "support/corpus.rs"]
mod corpus;
mod policy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rebound::detector::detect;
use rebound::policy::{ModuleOptions, PolicyChain};
use rebound::verdict::{BUILTIN, BounceClass, Reason, Verdict};

use policy_support::*;

/// One labelled recipient: (file, address) → (reason as labelled, hard/soft/none).
fn truth(dir: &Path) -> BTreeMap<(String, String), (String, String)> {
    let text = std::fs::read_to_string(dir.join("truth.tsv")).expect("truth.tsv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 7).then(|| {
                (
                    (f[0].to_owned(), f[2].to_lowercase()),
                    (f[5].to_owned(), f[6].to_owned()),
                )
            })
        })
        .collect()
}

struct Message {
    file: String,
    raw: Vec<u8>,
}

fn messages(dir: &Path) -> Vec<Message> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("bsd"))
        .expect("corpus/bsd")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for p in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
    {
        let name = format!("bsd/{}", p.file_name().unwrap().to_string_lossy());
        out.push(Message {
            file: name,
            raw: std::fs::read(&p).unwrap(),
        });
    }
    assert!(out.len() > 100, "corpus has {} messages", out.len());
    out
}

/// Runs the chain over the corpus: (file, built-in verdict, final verdict) for each
/// message whose verdict the chain changed.
fn changes(chain: &PolicyChain, msgs: &[Message]) -> Vec<(String, Verdict, Verdict)> {
    let mut out = Vec::new();
    for m in msgs {
        let d = detect(&m.raw);
        let v = chain.run(&m.raw, &d).expect("chain run");
        assert_eq!(
            chain.stats()[0].failures,
            0,
            "{}: {:?}",
            m.file,
            chain.stats()[0].last_error
        );
        if v != d.verdict {
            assert_ne!(v.decided_by, BUILTIN, "{}", m.file);
            out.push((m.file.clone(), d.verdict, v));
        }
    }
    out
}

fn contains_ci(raw: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    raw.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Labelled recipients of `file` that `v` gets right (reason and class).
fn agreeing(
    truth: &BTreeMap<(String, String), (String, String)>,
    file: &str,
    v: &Verdict,
) -> usize {
    v.recipients
        .iter()
        .filter(|r| {
            truth
                .get(&(file.to_owned(), r.address.to_lowercase()))
                .is_some_and(|(reason, class)| {
                    let got_class = r.bounce.map_or("none", |b| {
                        if b == BounceClass::Hard {
                            "hard"
                        } else {
                            "soft"
                        }
                    });
                    reason.parse::<Reason>().ok() == Some(r.reason) && class == got_class
                })
        })
        .count()
}

#[test]
fn invalid_recipient_changes_exactly_the_messages_that_say_it() {
    let Some(dir) = corpus::labelled() else {
        return;
    };
    let msgs = messages(&dir);
    // The Rust example and its Python twin: the same changes.
    let mut changed_by_language = Vec::new();
    for name in ["invalid-recipient", "invalid-recipient-py"] {
        let path = guest_or_skip!(name);
        let options = ModuleOptions {
            timeout: std::time::Duration::from_secs(2),
            ..ModuleOptions::default()
        };
        let chain = PolicyChain::new(vec![module(name, &path, options)]);
        let truth = truth(&dir);
        let saying: BTreeSet<String> = msgs
            .iter()
            .filter(|m| contains_ci(&m.raw, "invalid recipient"))
            .map(|m| m.file.clone())
            .collect();
        assert!(!saying.is_empty());

        let changed = changes(&chain, &msgs);
        let mut before_ok = 0;
        let mut after_ok = 0;
        for (file, before, after) in &changed {
            assert!(
                saying.contains(file),
                "{file} changed but does not say invalid recipient"
            );
            assert_eq!(after.decided_by, format!("policy:{name}"));
            before_ok += agreeing(&truth, file, before);
            after_ok += agreeing(&truth, file, after);
        }
        // Every message that says it ends with its labelled recipient a hard user-unknown.
        for file in &saying {
            let m = msgs.iter().find(|m| &m.file == file).unwrap();
            let v = chain.run(&m.raw, &detect(&m.raw)).unwrap();
            let labelled: Vec<_> = truth
                .keys()
                .filter(|(f, _)| f == file)
                .map(|(_, a)| a.clone())
                .collect();
            for a in labelled {
                let r = v.recipients.iter().find(|r| r.address.to_lowercase() == a);
                let r = r.unwrap_or_else(|| panic!("{file}: {a} missing from {v:?}"));
                assert_eq!(
                    (r.reason, r.bounce),
                    (Reason::UserUnknown, Some(BounceClass::Hard)),
                    "{file}"
                );
            }
        }
        eprintln!(
            "{name}: {} messages changed; labelled recipients right: {before_ok} before, {after_ok} after",
            changed.len()
        );
        assert!(after_ok > before_ok);
        let files: Vec<(String, Verdict)> = changed
            .into_iter()
            .map(|(f, _, after)| {
                (
                    f,
                    Verdict {
                        decided_by: String::new(),
                        ..after
                    },
                )
            })
            .collect();
        changed_by_language.push(files);
    }
    assert_eq!(
        changed_by_language[0], changed_by_language[1],
        "Rust and Python disagree"
    );
}

#[test]
fn verizon_mms_changes_exactly_the_gateway_notices_and_gets_them_right() {
    let Some(dir) = corpus::labelled() else {
        return;
    };
    let path = guest_or_skip!("verizon-mms");
    let chain = PolicyChain::new(vec![module("verizon-mms", &path, ModuleOptions::default())]);
    let msgs = messages(&dir);
    let truth = truth(&dir);
    let gateway = |m: &Message| {
        let head = &m.raw[..m.raw.len().min(4096)];
        contains_ci(head, "@vtext.com") || contains_ci(head, "vzwpix.com")
    };
    let notices: BTreeSet<String> = msgs
        .iter()
        .filter(|m| gateway(m))
        .map(|m| m.file.clone())
        .collect();
    assert!(notices.len() >= 2, "{notices:?}");

    let changed = changes(&chain, &msgs);
    let changed_files: BTreeSet<String> = changed.iter().map(|(f, _, _)| f.clone()).collect();
    assert!(
        changed_files.is_subset(&notices),
        "{changed_files:?} vs {notices:?}"
    );
    let labelled_in = |f: &str| truth.keys().filter(|(t, _)| t == f).count();
    for file in &notices {
        let m = msgs.iter().find(|m| &m.file == file).unwrap();
        let v = chain.run(&m.raw, &detect(&m.raw)).unwrap();
        assert_eq!(
            agreeing(&truth, file, &v),
            labelled_in(file),
            "{file}: {v:?}"
        );
    }
    for (file, before, after) in &changed {
        eprintln!(
            "verizon-mms: {file}: {:?} {:?} → {:?}",
            before.kind,
            before
                .recipients
                .iter()
                .map(|r| (&r.address, r.bounce, r.reason))
                .collect::<Vec<_>>(),
            after
                .recipients
                .iter()
                .map(|r| (&r.address, r.bounce, r.reason))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn protected_domains_only_softens_hard_bounces_of_those_domains() {
    let Some(dir) = corpus::labelled() else {
        return;
    };
    let path = guest_or_skip!("protected-domains");
    let options = with_config(&[("domains", "example.jp, example.co.jp")]);
    let chain = PolicyChain::new(vec![module("protected-domains", &path, options)]);
    let msgs = messages(&dir);
    let protected = |a: &str| {
        let d = a
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        ["example.jp", "example.co.jp"]
            .iter()
            .any(|p| d == *p || d.ends_with(&format!(".{p}")))
    };

    let changed = changes(&chain, &msgs);
    assert!(!changed.is_empty());
    for (file, before, after) in &changed {
        assert_eq!(before.kind, after.kind, "{file}");
        assert_eq!(before.recipients.len(), after.recipients.len(), "{file}");
        for (b, a) in before.recipients.iter().zip(&after.recipients) {
            if protected(&b.address) && b.bounce == Some(BounceClass::Hard) {
                assert_eq!(a.bounce, Some(BounceClass::Soft), "{file}");
                assert_eq!(
                    (&a.address, a.reason, &a.status),
                    (&b.address, b.reason, &b.status),
                    "{file}"
                );
            } else {
                assert_eq!(a, b, "{file}: only protected hard bounces change");
            }
        }
    }
    // And no protected address is hard anywhere after the chain.
    for m in &msgs {
        let v = chain.run(&m.raw, &detect(&m.raw)).unwrap();
        assert!(
            !v.recipients
                .iter()
                .any(|r| protected(&r.address) && r.bounce == Some(BounceClass::Hard)),
            "{}",
            m.file
        );
    }
    eprintln!("protected-domains: {} messages changed", changed.len());
}

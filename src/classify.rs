//! Classify: files, directories and mbox files in; one [`Record`] per message out — the
//! JSONL contract of `rebound classify`.
//!
//! The flow for each message is detect → verdict → record. The verdict step is supplied
//! by the caller ([`classify_message`] takes it as a closure), so the policy chain sits
//! between the detector and the output without this module knowing about it.
//!
//! ```
//! use rebound::classify::{classify_message, builtin_step};
//! let rec = classify_message("a.eml", b"From: a@example.com\n\nhi\n", builtin_step);
//! assert_eq!(rec.message_kind, rebound::verdict::MessageKind::Other);
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detector::{self, Detection};
use crate::verdict::{BounceClass, MessageKind, RecipientVerdict, Verdict};

/// Errors of input walking: only arguments that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path given on the command line does not exist or cannot be read.
    #[error("cannot read {path}")]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// One output line of `rebound classify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where the message came from, relative to the argument it was found under; an mbox
    /// adds `#N` (1-based).
    pub source: String,
    /// What kind of message it is.
    pub message_kind: MessageKind,
    /// One entry per recipient the message reports on.
    pub recipients: Vec<RecipientVerdict>,
    /// Who decided: `builtin` or `policy:<name>`.
    pub decided_by: String,
    /// The Message-ID of the returned original message, when the bounce carries it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub original_message_id: Option<String>,
    /// Why the message could not be read (or the verdict step failed), when it could not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Record {
    /// The record for a verdict of a detected message.
    pub fn new(source: &str, detection: &Detection, verdict: Verdict) -> Record {
        Record {
            source: source.to_owned(),
            message_kind: verdict.kind,
            recipients: verdict.recipients,
            decided_by: verdict.decided_by,
            original_message_id: detection
                .report
                .original
                .as_ref()
                .and_then(|o| o.message_id.clone()),
            error: detection.report.error.clone(),
        }
    }

    /// The record for something that could not be read at all.
    pub fn unreadable(source: &str, error: String) -> Record {
        Record {
            source: source.to_owned(),
            message_kind: MessageKind::Other,
            recipients: Vec::new(),
            decided_by: crate::verdict::BUILTIN.to_owned(),
            original_message_id: None,
            error: Some(error),
        }
    }
}

/// The verdict step that keeps the built-in verdict.
pub fn builtin_step(_raw: &[u8], detection: &Detection) -> std::result::Result<Verdict, String> {
    Ok(detection.verdict.clone())
}

/// Detects one message, asks `step` for the verdict (the built-in one, or the policy
/// chain's) and builds its record. A failing step keeps the built-in verdict and records
/// the failure in `error`.
pub fn classify_message<F>(source: &str, raw: &[u8], step: F) -> Record
where
    F: FnOnce(&[u8], &Detection) -> std::result::Result<Verdict, String>,
{
    let detection = detector::detect(raw);
    match step(raw, &detection) {
        Ok(verdict) => Record::new(source, &detection, verdict),
        Err(e) => {
            let mut r = Record::new(source, &detection, detection.verdict.clone());
            r.error = Some(e);
            r
        }
    }
}

/// A file to read, with the source name it gets in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The file.
    pub path: PathBuf,
    /// Its name relative to the argument it was found under (`/` separators).
    pub source: String,
}

/// Expands the arguments: a file is itself, a directory is every file below it, in
/// sorted order (hidden files skipped).
///
/// # Errors
/// [`Error::Unreadable`] when an argument does not exist or a directory cannot be listed.
pub fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|source| Error::Unreadable {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk_dir(p, p, &mut out)?;
        } else {
            out.push(Input {
                path: p.clone(),
                source: p.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(out)
}

fn walk_dir(root: &Path, dir: &Path, out: &mut Vec<Input>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|source| Error::Unreadable {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk_dir(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let source = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Input { path: p, source });
        }
    }
    Ok(())
}

/// True when `raw` is an mbox file: it starts with a `From ` line and a second message
/// starts after a blank line, or the first line is a `From ` line followed by headers.
pub fn is_mbox(raw: &[u8]) -> bool {
    raw.starts_with(b"From ") && split_mbox(raw).len() > 1
}

/// Splits an mbox on `From ` lines that start a message (at the start or after a blank
/// line). Each message keeps its `From ` line; the detector skips it.
pub fn split_mbox(raw: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut line_start = 0usize;
    let mut prev_blank = true;
    while line_start < raw.len() {
        let end = raw
            .get(line_start..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map(|p| line_start + p + 1)
            .unwrap_or(raw.len());
        let line = raw.get(line_start..end).unwrap_or_default();
        if prev_blank && line.starts_with(b"From ") {
            starts.push(line_start);
        }
        prev_blank = line.iter().all(|b| b.is_ascii_whitespace());
        line_start = end;
    }
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(raw.len());
        if let Some(m) = raw.get(s..e)
            && !m.iter().all(|b| b.is_ascii_whitespace())
        {
            out.push(m);
        }
    }
    out
}

/// Reads one input and classifies every message in it (one for a plain file, each for an
/// mbox), calling `step` for each verdict.
pub fn classify_input<F>(input: &Input, mut step: F) -> Vec<Record>
where
    F: FnMut(&[u8], &Detection) -> std::result::Result<Verdict, String>,
{
    let raw = match fs::read(&input.path) {
        Ok(r) => r,
        Err(e) => {
            return vec![Record::unreadable(
                &input.source,
                format!("cannot read file: {e}"),
            )];
        }
    };
    if is_mbox(&raw) {
        split_mbox(&raw)
            .into_iter()
            .enumerate()
            .map(|(i, m)| classify_message(&format!("{}#{}", input.source, i + 1), m, &mut step))
            .collect()
    } else {
        vec![classify_message(&input.source, &raw, &mut step)]
    }
}

/// One line of the table format: source, kind, recipient, bounce, status, reason.
pub fn table_rows(record: &Record) -> Vec<[String; 6]> {
    let kind = record.message_kind.as_str().to_owned();
    if record.recipients.is_empty() {
        let note = record.error.clone().unwrap_or_else(|| "-".to_owned());
        return vec![[
            record.source.clone(),
            kind,
            "-".into(),
            "-".into(),
            "-".into(),
            note,
        ]];
    }
    record
        .recipients
        .iter()
        .map(|r| {
            let bounce = match r.bounce {
                // A delay warning: the message is still being tried.
                Some(BounceClass::Soft) if r.action.as_deref() == Some("delayed") => {
                    "soft (delayed)"
                }
                Some(class) => class.as_str(),
                None => "-",
            };
            [
                record.source.clone(),
                kind.clone(),
                r.address.clone(),
                bounce.to_owned(),
                r.status.clone().unwrap_or_else(|| "-".into()),
                r.feedback_type
                    .as_ref()
                    .map(|f| format!("{} ({f})", r.reason))
                    .unwrap_or_else(|| r.reason.to_string()),
            ]
        })
        .collect()
}

/// Renders records as an aligned text table with a header line.
pub fn render_table(records: &[Record]) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["SOURCE", "KIND", "RECIPIENT", "BOUNCE", "STATUS", "REASON"].map(str::to_owned)];
    for r in records {
        rows.extend(table_rows(r));
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths.iter()).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn split_mbox_splits_on_from_lines_after_blank_lines() {
        let mbox = b"From a@example.com Mon\nSubject: 1\n\nbody\nFrom here on\n\nFrom b@example.com Tue\nSubject: 2\n\nx\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with(b"From b@"));
        assert!(is_mbox(mbox));
        assert!(!is_mbox(b"Subject: x\n\nFrom the desk\n"));
    }

    #[test]
    fn table_marks_delay_warnings() {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/05-delay-warning.eml"
        ))
        .unwrap();
        let rec = classify_message("05", &raw, |_, d| Ok(d.verdict.clone()));
        let rows = table_rows(&rec);
        assert_eq!(rows[0][1], "bounce");
        assert_eq!(rows[0][3], "soft (delayed)");
        assert!(render_table(&[rec]).contains("soft (delayed)"));
    }

    #[test]
    fn classify_message_keeps_builtin_verdict_when_step_fails() {
        let rec = classify_message("x", b"Subject: hi\n\nhello\n", |_, _| Err("boom".into()));
        assert_eq!(rec.error.as_deref(), Some("boom"));
        assert_eq!(rec.decided_by, "builtin");
    }

    #[test]
    fn inputs_are_sorted_and_relative() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/2.eml"), "x").unwrap();
        std::fs::write(dir.path().join("a.eml"), "x").unwrap();
        let got = inputs(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = got.iter().map(|i| i.source.as_str()).collect();
        assert_eq!(names, ["a.eml", "b/2.eml"]);
        assert!(inputs(&[dir.path().join("missing")]).is_err());
    }
}

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
    // The entry's type comes with the listing: no stat per file, except for symlinks,
    // which are followed.
    let mut paths: Vec<(PathBuf, Option<bool>)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let is_dir = e
                .file_type()
                .ok()
                .filter(|t| !t.is_symlink())
                .map(|t| t.is_dir());
            Some((e.path(), is_dir))
        })
        .collect();
    // One directory's entries share the directory's prefix, so their paths' bytes order
    // them as their names would (and without splitting each path into components per
    // comparison, which was most of the listing's cost).
    paths.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    for (p, is_dir) in paths {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if is_dir.unwrap_or_else(|| p.is_dir()) {
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
    mbox_ranges(raw)
        .into_iter()
        .filter_map(|r| raw.get(r))
        .collect()
}

/// Where [`split_mbox`]'s messages are in `raw`.
fn mbox_ranges(raw: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut starts = Vec::new();
    let mut line_start = 0usize;
    let mut prev_blank = true;
    while line_start < raw.len() {
        let end = raw
            .get(line_start..)
            .and_then(|r| memchr::memchr(b'\n', r))
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
        if raw
            .get(s..e)
            .is_some_and(|m| !m.iter().all(|b| b.is_ascii_whitespace()))
        {
            out.push(s..e);
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

/// How many worker threads [`classify_parallel`] uses for `jobs` (0 = one per core).
pub fn worker_count(jobs: usize) -> usize {
    if jobs > 0 {
        return jobs;
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// An mbox being classified: its bytes, where each message is, and the next one to take.
struct MboxJob {
    input: usize,
    raw: Vec<u8>,
    messages: Vec<std::ops::Range<usize>>,
    next: std::sync::atomic::AtomicUsize,
}

/// What a worker hands the writer: how many records an input gives, or one of them.
enum Done {
    Count {
        input: usize,
        records: usize,
    },
    Record {
        input: usize,
        index: usize,
        record: Record,
    },
}

/// How many of a worker's results go to the writer at once: one hand-over per result
/// woke the writer (a futex call and a context switch) about twice per message.
const BATCH: usize = 16;

/// A worker's results on their way to the writer, handed over [`BATCH`] at a time and
/// whatever is left when the worker naps or ends.
struct Batch {
    tx: std::sync::mpsc::Sender<Vec<Done>>,
    done: Vec<Done>,
}

impl Batch {
    /// Queues `done`; false once the writer has gone.
    fn push(&mut self, done: Done) -> bool {
        self.done.push(done);
        self.done.len() < BATCH || self.flush()
    }

    /// A file that is one message (or could not be read): its count, then it.
    fn push_single(&mut self, input: usize, record: Record) -> bool {
        self.push(Done::Count { input, records: 1 })
            && self.push(Done::Record {
                input,
                index: 0,
                record,
            })
    }

    fn flush(&mut self) -> bool {
        if self.done.is_empty() {
            return true;
        }
        let done = std::mem::replace(&mut self.done, Vec::with_capacity(BATCH));
        self.tx.send(done).is_ok()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Classifies `inputs` on [`worker_count(jobs)`](worker_count) threads and hands `emit`
/// the records in the order [`classify_input`] over each input in turn gives them (the
/// output does not depend on the thread count). The messages of one mbox are shared out
/// between the threads too. `emit` runs on the calling thread; its first error stops
/// the work and is returned.
///
/// # Errors
/// The first error of `emit`.
pub fn classify_parallel<F, E, W>(
    inputs: &[Input],
    jobs: usize,
    step: F,
    mut emit: W,
) -> std::result::Result<(), E>
where
    F: Fn(&[u8], &Detection) -> std::result::Result<Verdict, String> + Sync,
    W: FnMut(Record) -> std::result::Result<(), E>,
{
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    let workers = worker_count(jobs);
    if workers <= 1 || inputs.is_empty() {
        // No threads to start: the plain loop, which is also the reference order.
        for input in inputs {
            for record in classify_input(input, &step) {
                emit(record)?;
            }
        }
        return Ok(());
    }
    let next_input = AtomicUsize::new(0);
    // Workers between taking a file and knowing whether it is an mbox: an idle worker
    // waits for them instead of leaving, or a last big mbox would be left to one thread.
    let opening = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Mboxes with messages left to take; workers empty these before opening another file,
    // so at most one mbox per worker is held in memory.
    let mboxes: Mutex<Vec<Arc<MboxJob>>> = Mutex::new(Vec::new());
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Done>>();

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (step, next_input, opening, stop, mboxes) =
                (&step, &next_input, &opening, &stop, &mboxes);
            scope.spawn(move || {
                let mut out = Batch {
                    tx,
                    done: Vec::with_capacity(BATCH),
                };
                while !stop.load(Ordering::Relaxed) {
                    let job = {
                        let mut list = mboxes.lock().unwrap_or_else(PoisonError::into_inner);
                        list.retain(|j| j.next.load(Ordering::Relaxed) < j.messages.len());
                        list.first().cloned()
                    };
                    if let Some(job) = job {
                        let index = job.next.fetch_add(1, Ordering::Relaxed);
                        let (Some(range), Some(input)) =
                            (job.messages.get(index), inputs.get(job.input))
                        else {
                            continue;
                        };
                        let source = format!("{}#{}", input.source, index + 1);
                        let raw = job.raw.get(range.clone()).unwrap_or_default();
                        let record = classify_message(&source, raw, step);
                        if !out.push(Done::Record {
                            input: job.input,
                            index,
                            record,
                        }) {
                            return;
                        }
                        continue;
                    }
                    opening.fetch_add(1, Ordering::SeqCst);
                    let i = next_input.fetch_add(1, Ordering::SeqCst);
                    let Some(input) = inputs.get(i) else {
                        opening.fetch_sub(1, Ordering::SeqCst);
                        // Seen in this order, an opener that is done has already
                        // published its mbox.
                        let others_opening = opening.load(Ordering::SeqCst) > 0;
                        let pending = !mboxes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .is_empty();
                        if others_opening || pending {
                            // What this worker has done must not wait on its nap.
                            if !out.flush() {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_micros(100));
                            continue;
                        }
                        return;
                    };
                    let raw = match fs::read(&input.path) {
                        Ok(raw) => raw,
                        Err(e) => {
                            opening.fetch_sub(1, Ordering::SeqCst);
                            let record =
                                Record::unreadable(&input.source, format!("cannot read file: {e}"));
                            if !out.push_single(i, record) {
                                return;
                            }
                            continue;
                        }
                    };
                    let messages = if raw.starts_with(b"From ") {
                        mbox_ranges(&raw)
                    } else {
                        Vec::new()
                    };
                    if messages.len() > 1 {
                        let count = Done::Count {
                            input: i,
                            records: messages.len(),
                        };
                        let job = Arc::new(MboxJob {
                            input: i,
                            raw,
                            messages,
                            next: AtomicUsize::new(0),
                        });
                        mboxes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(job);
                        opening.fetch_sub(1, Ordering::SeqCst);
                        if !out.push(count) {
                            return;
                        }
                    } else {
                        opening.fetch_sub(1, Ordering::SeqCst);
                        let record = classify_message(&input.source, &raw, step);
                        if !out.push_single(i, record) {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);

        // Put the records back in input order: (input, index) → record, emitted as soon
        // as the next one in order is there.
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        let mut pending: BTreeMap<(usize, usize), Record> = BTreeMap::new();
        let (mut input, mut index) = (0usize, 0usize);
        let mut result = Ok(());
        for done in rx.into_iter().flatten() {
            match done {
                Done::Count { input, records } => {
                    counts.insert(input, records);
                }
                Done::Record {
                    input,
                    index,
                    record,
                } => {
                    pending.insert((input, index), record);
                }
            }
            while let Some(&n) = counts.get(&input) {
                if index == n {
                    counts.remove(&input);
                    (input, index) = (input + 1, 0);
                    continue;
                }
                let Some(record) = pending.remove(&(input, index)) else {
                    break;
                };
                index += 1;
                if result.is_ok() {
                    result = emit(record);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        result
    })
}

/// One line of the table format: source, kind, recipient, bounce, blame, status, reason.
pub fn table_rows(record: &Record) -> Vec<[String; 7]> {
    let kind = record.message_kind.as_str().to_owned();
    if record.recipients.is_empty() {
        let note = record.error.clone().unwrap_or_else(|| "-".to_owned());
        return vec![[
            record.source.clone(),
            kind,
            "-".into(),
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
                r.blame.map_or("-", |b| b.as_str()).to_owned(),
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
    let mut rows: Vec<[String; 7]> = vec![
        [
            "SOURCE",
            "KIND",
            "RECIPIENT",
            "BOUNCE",
            "BLAME",
            "STATUS",
            "REASON",
        ]
        .map(str::to_owned),
    ];
    for r in records {
        rows.extend(table_rows(r));
    }
    let mut widths = [0usize; 7];
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
        assert_eq!(rows[0][4], "transit");
        assert!(render_table(&[rec]).contains("soft (delayed)"));
    }

    #[test]
    fn classify_message_keeps_builtin_verdict_when_step_fails() {
        let rec = classify_message("x", b"Subject: hi\n\nhello\n", |_, _| Err("boom".into()));
        assert_eq!(rec.error.as_deref(), Some("boom"));
        assert_eq!(rec.decided_by, "builtin");
    }

    #[test]
    fn classify_parallel_keeps_the_order_of_the_plain_loop() {
        let dir = tempfile::tempdir().unwrap();
        let note = |i: usize| format!("From: a{i}@example.com\nSubject: {i}\n\nhi\n");
        let mut mbox = String::new();
        for i in 0..50 {
            mbox.push_str(&format!(
                "From x{i}@example.com Mon Mar  2 10:00:00 2026\n{}\n",
                note(i)
            ));
        }
        std::fs::write(dir.path().join("b.mbox"), mbox).unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("a{i:02}.eml")), note(i)).unwrap();
        }
        std::fs::write(
            dir.path().join("z.mbox"),
            "From x Mon\nSubject: 1\n\n\nFrom y Tue\nSubject: 2\n\n",
        )
        .unwrap();
        let inputs = inputs(&[dir.path().to_owned()]).unwrap();
        let plain: Vec<Record> = inputs
            .iter()
            .flat_map(|i| classify_input(i, builtin_step))
            .collect();
        assert_eq!(plain.len(), 20 + 50 + 2);
        for jobs in [1, 2, 3, 8] {
            let mut got = Vec::new();
            classify_parallel(&inputs, jobs, builtin_step, |r| {
                got.push(r);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(got, plain, "{jobs} threads");
        }
        // The writer's first error stops the work and comes back.
        let mut seen = 0;
        let err = classify_parallel(&inputs, 3, builtin_step, |_| {
            seen += 1;
            if seen == 5 { Err("full") } else { Ok(()) }
        });
        assert_eq!(err, Err("full"));
        assert_eq!(seen, 5);
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

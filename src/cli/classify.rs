//! `rebound classify`: files, directories and mbox files in; one verdict per message out
//! (JSONL by default, a JSON array, or a table). Each message goes detect → verdict step
//! (the policy chain) → record, on every core; the output is in input order whatever the
//! number of threads.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use rebound::classify::{self, Record};
use rebound::policy::PolicyChain;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array.
    Json,
    /// An aligned text table, one line per recipient.
    Table,
}

/// Arguments of `rebound classify`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// A policy component to run after the built-in detector (repeatable; run in the
    /// order given, named after the file stem, with the config's `[policy_limits]`).
    /// Without it, the config's `[[policy]]` chain runs.
    #[arg(long = "policy", value_name = "FILE.wasm")]
    policies: Vec<PathBuf>,
    /// Where compiled policy components are cached [default: $XDG_CACHE_HOME/rebound,
    /// else ~/.cache/rebound].
    #[arg(long, value_name = "DIR", env = "REBOUND_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, short = 'j', default_value_t = 0)]
    jobs: usize,
    /// Files, directories (recursive) and mbox files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub(crate) async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    // The detector's tables are built on two threads while the inputs are listed, the
    // chain is loaded and the first messages are read: a one-shot run would otherwise
    // build them one after another on the first messages. Nothing waits for them here: a
    // worker that needs a table still being built waits for that one only.
    let warming = [0, 1].map(|half| std::thread::spawn(move || rebound::detector::warm_up(half)));
    let mut inputs = Vec::new();
    for path in &args.paths {
        let found = classify::inputs(std::slice::from_ref(path))
            .context("reading the paths to classify")?;
        if found.is_empty() {
            // Not an error (an empty spool is normal), but an empty output needs a reason.
            eprintln!("rebound: no messages found in {}", path.display());
        }
        inputs.extend(found);
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .or_else(rebound::policy::cache::user_dir);
    let chain = chain(config, &args.policies, cache_dir)?;
    let step = |raw: &[u8], detection: &rebound::detector::Detection| {
        chain
            .run(raw, detection)
            .map_err(|e| format!("policy chain: {e}"))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut all: Vec<Record> = Vec::new();
    // Guests use WASI's blocking stdio: the workers are plain threads, off the runtime.
    tokio::task::block_in_place(|| {
        classify::classify_parallel(&inputs, args.jobs, step, |record| {
            match args.format {
                Format::Jsonl => {
                    serde_json::to_writer(&mut out, &record)?;
                    out.write_all(b"\n")?;
                }
                Format::Json | Format::Table => all.push(record),
            }
            anyhow::Ok(())
        })
    })
    .context("writing output")?;
    for w in warming {
        // The builders do not panic: a table that fails to build matches nothing.
        let _ = w.join();
    }
    match args.format {
        Format::Jsonl => {}
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &all).context("writing output")?;
            out.write_all(b"\n").context("writing output")?;
        }
        Format::Table => out
            .write_all(classify::render_table(&all).as_bytes())
            .context("writing output")?,
    }
    out.flush().context("writing output")?;
    Ok(ExitCode::SUCCESS)
}

/// The `--policy` files in order, else the config's `[[policy]]` chain; compiled code is
/// cached in `cache_dir` (none: compiled on every run).
fn chain(
    config: &Path,
    files: &[PathBuf],
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<PolicyChain> {
    if !files.is_empty() {
        return super::policy::chain_from_files(config, files, cache_dir);
    }
    let config = super::load_config(config)?;
    if config.policy.is_empty() {
        return Ok(PolicyChain::empty());
    }
    let mut limits = config.policy_limits.clone();
    // Without a per-user directory the config's own cache (the daemon's) is used.
    if let Some(dir) = cache_dir {
        limits.cache_dir = dir;
    }
    PolicyChain::from_config(&config.policy, &limits).context("loading the config's policy chain")
}

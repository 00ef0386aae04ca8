//! `rebound classify`: files, directories and mbox files in; one verdict per message out
//! (JSONL by default, a JSON array, or a table). Each message goes detect → verdict step
//! (the policy chain) → record.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use rebound::classify::{self, Record};

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
    #[arg(long = "policy", value_name = "FILE.wasm")]
    policies: Vec<PathBuf>,
    /// Files, directories (recursive) and mbox files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub(crate) async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let inputs = classify::inputs(&args.paths).context("reading the paths to classify")?;
    let chain = super::policy::chain_from_files(config, &args.policies)?;
    let mut step = |raw: &[u8], detection: &rebound::detector::Detection| {
        chain
            .run(raw, detection)
            .map_err(|e| format!("policy chain: {e}"))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all: Vec<Record> = Vec::new();
    for input in &inputs {
        for record in classify::classify_input(input, &mut step) {
            match args.format {
                Format::Jsonl => {
                    serde_json::to_writer(&mut out, &record).context("writing output")?;
                    out.write_all(b"\n").context("writing output")?;
                }
                Format::Json | Format::Table => all.push(record),
            }
        }
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

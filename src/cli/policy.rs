//! `rebound policy check|test|state`: validate a policy component, try it on saved messages
//! against the built-in verdicts, and show (or clear) what a policy keeps in its state.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rebound::classify;
use rebound::policy::{ChainRun, ModuleOptions, Outcome, PolicyChain, PolicyEngine, PolicyModule};
use rebound::verdict::{RecipientVerdict, Verdict};

/// `rebound policy …`
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Write a new policy crate (source, a sample bounce, a test, the SDK) to build for
    /// wasm32-wasip2.
    New(super::policy_new::Args),
    /// Validate a component and print its world, imports and exports.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// Run a component over messages and show, message by message, where its decision
    /// differs from the built-in verdict (and where it failed).
    Test {
        /// The `.wasm` component.
        file: PathBuf,
        /// Files, directories (recursive) and mbox files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A `config` entry for the policy, `KEY=VALUE` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Also list the messages where nothing changed.
        #[arg(long)]
        all: bool,
    },
    /// Show what a policy keeps in its `state` (in the config's store): key, expiry and
    /// value of each live entry, in key order; or delete all of it.
    State {
        /// The policy's name (as in `[[policy]]` or the upload).
        name: String,
        /// Only the keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Delete every entry of the policy instead (it starts from nothing).
        #[arg(long)]
        clear: bool,
    },
}

pub(crate) async fn run(config: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::New(args) => super::policy_new::run(args),
        Command::Check { file } => check(config, &file),
        Command::Test {
            file,
            paths,
            set,
            all,
        } => test(config, &file, &paths, &set, all),
        Command::State {
            name,
            prefix,
            limit,
            clear,
        } => state(config, &name, &prefix, limit, clear).await,
    }
}

async fn state(
    config: &Path,
    name: &str,
    prefix: &str,
    limit: u32,
    clear: bool,
) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config)?;
    let store = super::open_store(&config).await?;
    if clear {
        let n = store
            .clear_policy_state(name)
            .await
            .context("clearing the state")?;
        println!("{n} entries of {name} deleted");
        return Ok(ExitCode::SUCCESS);
    }
    let now = rebound::store::Timestamp::now();
    let keys = store
        .policy_state_keys(name)
        .await
        .context("reading the state")?;
    let entries = store
        .policy_state_entries(name, prefix, None, limit, now)
        .await
        .context("reading the state")?;
    for (key, entry) in &entries {
        // One line per entry: a value's own line breaks shown as \n.
        println!(
            "{key}\texpires {}\t{}",
            entry.expires_at,
            entry.value.replace('\\', "\\\\").replace('\n', "\\n")
        );
    }
    println!(
        "{} entries shown; {name} holds {keys} keys (expired ones not yet pruned included)",
        entries.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The module options from the config's `[policy_limits]` (defaults without a config).
fn options(config: &Path) -> anyhow::Result<ModuleOptions> {
    let config = super::load_config(config)?;
    Ok(ModuleOptions::from_limits(&config.policy_limits))
}

/// The chain of `--policy` files, in order, with the config's `[policy_limits]` and the
/// compiled code cached in `cache_dir`.
pub(crate) fn chain_from_files(
    config: &Path,
    files: &[PathBuf],
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<PolicyChain> {
    if files.is_empty() {
        return Ok(PolicyChain::empty());
    }
    let mut opts = options(config)?;
    opts.cache_dir = cache_dir;
    let mut modules: Vec<Arc<PolicyModule>> = Vec::new();
    for f in files {
        let m = load(config, f, opts.clone())?;
        anyhow::ensure!(
            modules.iter().all(|x| x.name() != m.name()),
            "two policies named {:?}: rename one of the files",
            m.name()
        );
        modules.push(Arc::new(m));
    }
    Ok(PolicyChain::new(modules))
}

fn load(config: &Path, file: &Path, options_set: ModuleOptions) -> anyhow::Result<PolicyModule> {
    let _ = config;
    let engine = PolicyEngine::shared().context("starting the policy engine")?;
    PolicyModule::from_file(engine, file, options_set)
        .with_context(|| format!("loading {}", file.display()))
}

fn check(config: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let module = match load(config, file, options(config)?) {
        Ok(m) => m,
        Err(e) => {
            println!("{}: REFUSED\n  {e:#}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let (imports, exports) = module.describe();
    println!("{}: ok", file.display());
    println!("  name     {}", module.name());
    println!("  world    {}", module.world());
    println!("  sha256   {}", module.digest());
    println!("  imports  {}", imports.join("\n           "));
    println!("  exports  {}", exports.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn test(
    config: &Path,
    file: &Path,
    paths: &[PathBuf],
    set: &[String],
    all: bool,
) -> anyhow::Result<ExitCode> {
    let mut opts = options(config)?;
    let mut table = BTreeMap::new();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        table.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    opts.config = table;
    let module = Arc::new(load(config, file, opts)?);
    let chain = PolicyChain::new(vec![module.clone()]);
    let inputs = classify::inputs(paths).context("reading the paths to test")?;

    let (mut messages, mut changed, mut failed) = (0usize, 0usize, 0usize);
    let mut out = String::new();
    // One state for the whole run, in memory: a policy that remembers sees the messages
    // before, in the order given; nothing is written anywhere.
    let state = rebound::policy::StateSession::ephemeral();
    for input in &inputs {
        let mut runs: Vec<(Verdict, Result<ChainRun, String>)> = Vec::new();
        let records = classify::classify_input(input, |raw, detection| {
            state.begin_message(std::time::SystemTime::now());
            let run = chain
                .run_with(raw, detection, &state)
                .map_err(|e| e.to_string());
            let verdict = run
                .as_ref()
                .map(|r| r.verdict.clone())
                .unwrap_or_else(|_| detection.verdict.clone());
            runs.push((detection.verdict.clone(), run));
            Ok(verdict)
        });
        for (record, (builtin, run)) in records.iter().zip(runs) {
            messages += 1;
            let outcome = match &run {
                Ok(r) => r
                    .steps
                    .first()
                    .map(|s| s.outcome.clone())
                    .unwrap_or(Outcome::Kept),
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(out, "{}: FAILED {e}", record.source);
                    continue;
                }
            };
            match outcome {
                Outcome::Failed(f) => {
                    failed += 1;
                    let _ = writeln!(
                        out,
                        "{}: FAILED ({f}), built-in verdict kept",
                        record.source
                    );
                }
                Outcome::Disabled => {
                    failed += 1;
                    let _ = writeln!(
                        out,
                        "{}: skipped, the policy is disabled after failures",
                        record.source
                    );
                }
                Outcome::Kept => {
                    if all {
                        let _ = writeln!(out, "{}: kept {}", record.source, summary(&builtin));
                    }
                }
                Outcome::Replaced(v) | Outcome::NotBounce(v) => {
                    changed += 1;
                    let _ = writeln!(
                        out,
                        "{}: {} → {}",
                        record.source,
                        summary(&builtin),
                        summary(&v)
                    );
                    diff(&mut out, &builtin, &v);
                }
            }
        }
    }
    print!("{out}");
    let stats = module.stats();
    println!(
        "{messages} messages: {changed} changed by {}, {failed} failed{}",
        module.name(),
        if stats.disabled {
            " (the policy ended up disabled)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn summary(v: &Verdict) -> String {
    let kind = serde_json::to_value(v.kind)
        .ok()
        .and_then(|k| k.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{kind} ({} recipients)", v.recipients.len())
}

fn line(r: &RecipientVerdict) -> String {
    let class = r
        .bounce
        .map(|b| format!("{b:?}").to_lowercase())
        .unwrap_or_else(|| "-".into());
    format!(
        "{} {class} {} {}",
        r.address,
        r.status.as_deref().unwrap_or("-"),
        r.reason
    )
}

fn diff(out: &mut String, before: &Verdict, after: &Verdict) {
    for r in &before.recipients {
        if !after.recipients.contains(r) {
            let _ = writeln!(out, "    - {}", line(r));
        }
    }
    for r in &after.recipients {
        if !before.recipients.contains(r) {
            let _ = writeln!(out, "    + {}", line(r));
        }
    }
}

//! The `rebound` command line: loads the config, sets up logging and runs one subcommand.
//! The only host code that uses `anyhow`, together with the subcommands in `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A WebAssembly-scriptable bounce engine: send under rate limits, read the bounce
/// mailbox, classify every returned message and keep each recipient's state true.
#[derive(Parser)]
#[command(name = "rebound", version, about)]
struct Cli {
    /// The configuration file (a missing default file means built-in defaults).
    #[arg(long, global = true, default_value = cli::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify messages from files, directories and mbox files; print one verdict per message.
    Classify(cli::classify::Args),
    /// Check and try out policy modules.
    #[command(subcommand)]
    Policy(cli::policy::Command),
    /// Poll the bounce mailbox (once, or every poll_interval).
    Poll(cli::poll::Args),
    /// List recipients and their state.
    Recipients(cli::poll::RecipientsArgs),
    /// List bounce events.
    Events(cli::poll::EventsArgs),
    /// Run the detector and a policy chain over the archived messages again and show what
    /// would change (--dry-run).
    Reprocess(cli::reprocess::Args),
    /// Send a campaign.
    Send(cli::send::Args),
    /// List campaigns with their counts.
    Campaigns(cli::send::CampaignsArgs),
    /// Run the daemon: poller, campaign workers and the admin HTTP API.
    Serve(cli::serve::Args),
    /// Load and check a config file, its policy modules and its store.
    CheckConfig,
    /// Deliver event webhooks ([[notify]]) and see what waits.
    #[command(subcommand)]
    Notify(cli::notify::Command),
}

/// mimalloc instead of the system allocator: the detector allocates many short strings,
/// and glibc's malloc and free were a tenth of a `rebound classify` run (measured:
/// 279 M → 255 M instructions over the corpus, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc advises transparent huge pages on its whole arena, so each first touch of
/// heap zeroes 2 MiB: in a short `rebound classify` a quarter of the CPU time went to
/// the kernel clearing pages the run never used (BENCHMARKS.md). Ordinary pages for
/// the rest of the process; a failure only keeps the kernel's default.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("rebound: starting the async runtime: {err}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> ExitCode {
    cli::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => cli::classify::run(&cli.config, args).await,
        Command::Policy(cmd) => cli::policy::run(&cli.config, cmd).await,
        Command::Poll(args) => cli::poll::run(&cli.config, args).await,
        Command::Recipients(args) => cli::poll::recipients(&cli.config, args).await,
        Command::Events(args) => cli::poll::events(&cli.config, args).await,
        Command::Reprocess(args) => cli::reprocess::run(&cli.config, args).await,
        Command::Send(args) => cli::send::run(&cli.config, args).await,
        Command::Campaigns(args) => cli::send::campaigns(&cli.config, args).await,
        Command::Serve(args) => cli::serve::run(&cli.config, args).await,
        Command::CheckConfig => cli::check_config(&cli.config).await,
        Command::Notify(cmd) => cli::notify::run(&cli.config, cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rebound: {err:#}");
            ExitCode::from(2)
        }
    }
}

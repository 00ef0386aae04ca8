//! The `rebound` command line.
use clap::Parser;

/// A WebAssembly-scriptable bounce engine.
#[derive(Parser)]
#[command(name = "rebound", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}

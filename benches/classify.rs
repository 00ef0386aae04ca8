//! `rebound classify` as a whole process, against p5-Sisimai on the same files, and the
//! compile cache of `classify --policy` (first run against a repeat run).
//!
//! `cargo bench --bench classify` (part of `make bench`). The corpus is `REBOUND_CORPUS`
//! (default `../shared/corpus/sisimai`): every file `rebound classify` reads below it is
//! also handed to `Sisimai->make` (Debian: `libsisimai-perl`), in one perl process. The two
//! take turns, round after round, so load from other work hits both alike; the figure is
//! the best round of each, and the ratio is taken from the same run.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;

/// Wall time of one run of `cmd`, output thrown away; panics when it fails.
fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting the command");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

fn best_and_median(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[0]), ms(v[v.len() / 2]))
}

fn rebound() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebound"));
    c.env_remove("REBOUND_LOG");
    c
}

const SISIMAI: &str = "use Sisimai; my $n = 0; for my $p (@ARGV) { my $v = Sisimai->make($p); $n += scalar @{ $v // [] } } print \"$n\\n\";";

fn sisimai_available() -> bool {
    Command::new("perl")
        .args(["-MSisimai", "-e", "1"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn corpus_part(dir: &Path) {
    let files: Vec<PathBuf> = rebound::classify::inputs(&[dir.to_owned()])
        .expect("listing the corpus")
        .into_iter()
        .map(|i| i.path)
        .collect();
    let messages = rebound()
        .args(["classify", "-j", "1"])
        .arg(dir)
        .output()
        .map(|o| o.stdout.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0);
    let cores = rebound::classify::worker_count(0);
    println!(
        "corpus: {} ({} files, {messages} messages); {cores} cores; best and median of {ROUNDS} rounds",
        dir.display(),
        files.len()
    );
    let sisimai = sisimai_available();
    if !sisimai {
        println!("  sisimai: not installed (apt-get install libsisimai-perl): rebound only");
    }
    let (mut all, mut one, mut sis) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        all.push(time(rebound().arg("classify").arg(dir)));
        one.push(time(rebound().args(["classify", "-j", "1"]).arg(dir)));
        if sisimai {
            sis.push(time(
                Command::new("perl").args(["-e", SISIMAI]).args(&files),
            ));
        }
    }
    let (all_best, all_median) = best_and_median(all);
    let (one_best, one_median) = best_and_median(one);
    println!("  rebound classify, every core   {all_best:>8.1} ms  (median {all_median:.1})");
    println!("  rebound classify -j 1          {one_best:>8.1} ms  (median {one_median:.1})");
    if sisimai {
        let (sis_best, sis_median) = best_and_median(sis);
        println!("  sisimai (perl, Sisimai->make)  {sis_best:>8.1} ms  (median {sis_median:.1})");
        println!(
            "  sisimai / rebound              {:>8.1}x  (medians {:.1}x; goal >= 25x)",
            sis_best / all_best,
            sis_median / all_median
        );
    }
}

/// `classify --policy` over the samples: a first run (empty cache) pays the compile, a
/// repeat run loads the cached code.
fn cache_part() {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests/wasm32-wasip2/release/invalid_recipient.wasm");
    if !guest.is_file() {
        println!(
            "policy cache: {} not built (make guests): skipped",
            guest.display()
        );
        return;
    }
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let (mut first, mut repeat, mut none) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let cache = tempfile::tempdir().expect("temporary cache dir");
        let run = || {
            let mut c = rebound();
            c.arg("classify")
                .arg("--policy")
                .arg(&guest)
                .arg("--cache-dir")
                .arg(cache.path())
                .arg(&samples);
            c
        };
        first.push(time(&mut run()));
        repeat.push(time(&mut run()));
        none.push(time(rebound().arg("classify").arg(&samples)));
    }
    let (first_best, first_median) = best_and_median(first);
    let (repeat_best, repeat_median) = best_and_median(repeat);
    let (none_best, _) = best_and_median(none);
    println!("policy cache: classify --policy invalid_recipient.wasm samples/ (6 messages)");
    println!(
        "  first run (compiles, fills the cache) {first_best:>8.1} ms  (median {first_median:.1})"
    );
    println!(
        "  repeat run (cached code)              {repeat_best:>8.1} ms  (median {repeat_median:.1})"
    );
    println!("  no policy at all                      {none_best:>8.1} ms");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let dir = corpus::dir();
    if dir.is_dir() {
        corpus_part(&dir);
    } else {
        println!(
            "corpus: not found at {} (set REBOUND_CORPUS): skipped",
            dir.display()
        );
    }
    cache_part();
}

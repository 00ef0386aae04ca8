//! A private PostgreSQL cluster, one per test process, shared by its tests: each test gets
//! a fresh empty database on it with [`database`].
//!
//! Include it from a test file with `#[path = "support/postgres.rs"] mod postgres;`, or
//! from the library's unit tests with
//! `#[cfg(test)] #[path = "../../tests/support/postgres.rs"] mod postgres_support;` (in
//! `src/store/mod.rs`). Either way its own `#[path = "skip.rs"]` resolves beside this
//! file, and it needs nothing but std, `rustix` (a dependency of the library) and
//! `skip.rs`.
//!
//! The cluster: `initdb` into `$TMPDIR/rebound-pg-<pid>-<n>` (superuser `postgres`, trust
//! authentication), listening only on 127.0.0.1 on a random free high port and on a unix
//! socket in that directory, started with `pg_ctl -w start`. As root the directory
//! belongs to the `postgres` system user and every server command runs as that user
//! (`runuser -u postgres --`: PostgreSQL refuses to run as root); otherwise as the
//! current user. Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`):
//! a test's data needs to outlive no crash.
//!
//! Cleanup: the shared cluster lives in a `static` that is never dropped, so it is not
//! stopped by `Drop`. Instead, a watchdog (`sh`, in its own process group so that a
//! Ctrl-C on the test run does not kill it first) is started before `initdb`, reading a
//! pipe whose only write end this process holds. When the process ends, however it ends,
//! the kernel closes that end; the watchdog reads EOF, runs `pg_ctl stop -m immediate`
//! and removes the directory. Dropping a [`Cluster`] closes the pipe the same way and
//! waits for the watchdog. As a backstop (a watchdog killed by hand), starting a cluster
//! first stops and removes the `rebound-pg-<pid>-*` directories of processes that no
//! longer exist (`/proc/<pid>`).
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`; Debian package
//! `postgresql`, found on `PATH` or in `/usr/lib/postgresql/<version>/bin`) and `psql`.
//! With `REBOUND_SKIP_POSTGRES` set, or without them, [`available`] reports the test as
//! skipped (`support/skip.rs`: visible, and a failure under `CI=true`) and the test
//! returns. A cluster that cannot start fails the test with the command and its output.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "skip.rs"]
mod skip;

/// The superuser of every private cluster (the user in the URLs).
pub const USER: &str = "postgres";

/// Are PostgreSQL's binaries installed (and not to be skipped)? When not, the calling test
/// is reported as skipped, with the reason.
pub fn available() -> bool {
    if std::env::var_os("REBOUND_SKIP_POSTGRES").is_some() {
        skip::skip_current("REBOUND_SKIP_POSTGRES is set");
        return false;
    }
    if bins().is_some() {
        return true;
    }
    skip::skip_current(
        "PostgreSQL's initdb/pg_ctl are not installed (package postgresql; `make test-deps`)",
    );
    false
}

/// A `postgres://postgres@127.0.0.1:PORT/DBNAME` URL of a new, empty database on this
/// process's shared cluster (started on first use).
///
/// # Panics
/// When the cluster cannot start or the database cannot be made.
pub fn database() -> String {
    shared().database()
}

/// The shared cluster's URL without a database, `postgres://postgres@127.0.0.1:PORT`
/// (a client then connects to the database `postgres`).
pub fn cluster_url() -> String {
    shared().url()
}

/// This process's cluster, started on first use. A failed start is kept: every test that
/// asks afterwards fails with the same message, without trying `initdb` again.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match SHARED.get_or_init(Cluster::try_start) {
        Ok(c) => c,
        Err(e) => panic!("starting the private PostgreSQL: {e}"),
    }
}

/// Runs `sql` with `psql` against `url` (a database URL from [`database`]); returns what it
/// printed, unaligned and without headers (`psql -X -A -t`), trimmed.
///
/// # Panics
/// When psql fails (the message has its stderr).
pub fn psql(url: &str, sql: &str) -> String {
    let bins = bins().expect("PostgreSQL is installed");
    run(Command::new(&bins.psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .arg("-c")
        .arg(sql))
    .unwrap_or_else(|e| panic!("{e}"))
    .trim()
    .to_string()
}

/// Where the PostgreSQL programs are.
struct Bins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

/// `initdb` and `pg_ctl` from one directory: the one `initdb` on `PATH` really lives in
/// (Debian puts only `psql`'s wrapper on `PATH`, other systems the server programs too),
/// else the newest `/usr/lib/postgresql/<version>/bin`. `psql` from there too when it is
/// there, else from `PATH`.
fn bins() -> Option<Bins> {
    let from_path = which("initdb")
        .and_then(|p| fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    let dir = from_path
        .into_iter()
        .chain(debian.into_iter().rev().map(|(_, d)| d))
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())?;
    let psql = Some(dir.join("psql"))
        .filter(|p| p.is_file())
        .or_else(|| which("psql"))?;
    Some(Bins {
        initdb: dir.join("initdb"),
        pg_ctl: dir.join("pg_ctl"),
        psql,
    })
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to its end; its stdout, or an error naming it with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    rustix::process::geteuid().as_raw() == 0
}

fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd (as root the server runs as {name})"))
}

/// `prog` as a command run as the cluster's owner: `postgres` when we are root.
fn as_owner(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

/// A running private cluster; stopped and removed when dropped (or, for the shared one,
/// when the process ends: see the module docs).
pub struct Cluster {
    /// The directory holding the data directory, the socket and the server log.
    pub dir: PathBuf,
    /// The port it listens on, on 127.0.0.1 only.
    pub port: u16,
    /// `server_version_num`, e.g. 150018.
    pub version: u32,
    watchdog: Child,
    /// The write end of the watchdog's stdin: closing it stops the cluster.
    hold: Option<ChildStdin>,
    databases: AtomicU64,
}

impl Cluster {
    /// Starts a cluster of its own (most tests want the shared one, [`database`]).
    ///
    /// # Panics
    /// When it cannot start (the message names the command and its output).
    pub fn start() -> Cluster {
        Cluster::try_start().unwrap_or_else(|e| panic!("starting a private PostgreSQL: {e}"))
    }

    fn try_start() -> Result<Cluster, String> {
        let bins = bins().ok_or("PostgreSQL's initdb/pg_ctl are not installed")?;
        sweep(&bins);
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rebound-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        // A leftover of an earlier process with our pid (it is dead: we are that pid).
        if dir.exists() {
            stop_and_remove(&bins, &dir);
        }
        let owner = if is_root() {
            Some(user_ids(USER)?)
        } else {
            None
        };
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }

        // The watchdog first: from here on, whatever happens to this process, the cluster
        // goes with it.
        let mut stop = as_owner(&bins.pg_ctl);
        stop.args(["stop", "-m", "immediate", "-D"])
            .arg(dir.join("data"));
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                r#"dir=$1; shift
read -r _
if [ -f "$dir/data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
rm -rf "$dir""#,
            )
            .arg("sh")
            .arg(&dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning the cleanup watchdog (sh): {e}"))?;
        let hold = watchdog.stdin.take();
        let mut cluster = Cluster {
            dir: dir.clone(),
            port: 0,
            version: 0,
            watchdog,
            hold,
            databases: AtomicU64::new(0),
        };

        let data = dir.join("data");
        // --no-sync: nothing needs to reach the disk (see the module docs).
        run(as_owner(&bins.initdb)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(&dir))?;
        let conf = format!(
            "\n# rebound's test cluster\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             # Tests need no durability: a crashed test cluster is thrown away.\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        // Trust, but only from the socket and from 127.0.0.1.
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .map_err(|e| format!("writing pg_hba.conf: {e}"))?;

        // The port is free when picked but may be taken before the server binds it: then
        // another one.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let started = run(as_owner(&bins.pg_ctl)
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .arg("-o")
                .arg(format!("-p {port}"))
                .current_dir(&dir));
            match started {
                Ok(_) => {
                    cluster.port = port;
                    let version = run(Command::new(&bins.psql)
                        .args(["-X", "-A", "-t", "-d"])
                        .arg(format!("{}/postgres", cluster.url()))
                        .args(["-c", "SHOW server_version_num"]))?;
                    cluster.version = version.trim().parse().unwrap_or(0);
                    return Ok(cluster);
                }
                Err(e) => {
                    let log = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    last = format!("{e}\nserver log:\n{log}");
                    if !log.contains("could not bind") && !log.contains("already in use") {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// `postgres://postgres@127.0.0.1:PORT` (no database: a client connects to `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}", self.port)
    }

    /// A new, empty database (`CREATE DATABASE rebound_test_<n>`, a copy of `template1`);
    /// its URL.
    ///
    /// # Panics
    /// When psql fails.
    pub fn database(&self) -> String {
        let name = format!(
            "rebound_test_{}",
            self.databases.fetch_add(1, Ordering::SeqCst)
        );
        // A file copy of the small template1 takes a fifth of the time of PostgreSQL 15's
        // default (WAL_LOG, block by block through the WAL).
        let strategy = if self.version >= 150000 {
            " STRATEGY = FILE_COPY"
        } else {
            ""
        };
        psql(
            &format!("{}/postgres", self.url()),
            &format!("CREATE DATABASE {name}{strategy}"),
        );
        format!("{}/{name}", self.url())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // EOF for the watchdog: it stops the server and removes the directory.
        drop(self.hold.take());
        let _ = self.watchdog.wait();
    }
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("appending to {}: {e}", path.display()))
}

/// Stops and removes the clusters of test processes that are gone (see the module docs).
fn sweep(bins: &Bins) {
    // Without /proc every process would look gone.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let me = std::process::id();
    for entry in fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rebound-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            stop_and_remove(bins, &entry.path());
        }
    }
}

fn stop_and_remove(bins: &Bins, dir: &Path) {
    let data = dir.join("data");
    if data.join("postmaster.pid").exists() {
        let _ = run(as_owner(&bins.pg_ctl)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .current_dir("/"));
    }
    let _ = fs::remove_dir_all(dir);
}

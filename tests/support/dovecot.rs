//! A private Dovecot POP3 server for one test: started on 127.0.0.1 with two random high
//! ports (plain with STLS, and implicit TLS), a private CA made with `openssl`, one user
//! with a maildir, and a filler that drops messages into it. Stopped when dropped.
//!
//! Include it from a test file with
//! `#[path = "support/dovecot.rs"] mod dovecot;`.
//!
//! Needs `dovecot` (package dovecot-pop3d) and `openssl`, and runs as root (the mail
//! processes run as the `mail` user, the login processes as `dovenull`). A test that
//! cannot start it fails with the reason; with `REBOUND_SKIP_DOVECOT=1`, or without
//! Dovecot installed, [`available`] reports the test as skipped (`support/skip.rs`:
//! visible, and a failure under `CI=true`) and the test returns.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rebound::config::{Pop3Config, TlsMode};

#[path = "skip.rs"]
mod skip;

/// The user every private Dovecot has.
pub const USER: &str = "bounces";
/// That user's password.
pub const PASSWORD: &str = "test-password";

/// Is Dovecot installed (and not to be skipped)? When not, the calling test is reported as
/// skipped, with the reason.
pub fn available() -> bool {
    if std::env::var_os("REBOUND_SKIP_DOVECOT").is_some() {
        skip::skip_current("REBOUND_SKIP_DOVECOT is set");
        return false;
    }
    if Path::new("/usr/sbin/dovecot").exists() || which("dovecot").is_some() {
        return true;
    }
    skip::skip_current("dovecot is not installed (package dovecot-pop3d; `make test-deps`)");
    false
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.exists())
}

/// A running private Dovecot.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Port of the plain listener (offers STLS).
    pub plain_port: u16,
    /// Port of the implicit-TLS listener.
    pub tls_port: u16,
    /// The CA certificate (PEM) that signed the server certificate.
    pub ca_file: PathBuf,
    /// The user's maildir.
    pub maildir: PathBuf,
    counter: AtomicU64,
    mail_uid: u32,
    mail_gid: u32,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn user_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {name} in /etc/passwd");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

impl Dovecot {
    /// Starts a private instance and waits for its `+OK` greeting on both ports.
    ///
    /// # Panics
    /// When Dovecot or openssl is missing or the server does not come up.
    pub fn start() -> Dovecot {
        let mut last = String::new();
        for _ in 0..3 {
            match Dovecot::try_start() {
                Ok(d) => return d,
                Err(e) => last = e,
            }
        }
        panic!("starting dovecot: {last}");
    }

    fn try_start() -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("rebound-dovecot-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = dir.path().to_path_buf();
        // Login (dovenull) and mail (mail) processes must be able to reach their dirs.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let (mail_uid, mail_gid) = user_ids("mail");

        let ca_file = make_certs(&root);
        let home = root.join("home");
        let maildir = home.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(maildir.join(sub)).map_err(|e| e.to_string())?;
        }
        for p in [
            &home,
            &maildir,
            &maildir.join("cur"),
            &maildir.join("new"),
            &maildir.join("tmp"),
        ] {
            chown(p, mail_uid, mail_gid);
        }
        fs::write(
            root.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .map_err(|e| e.to_string())?;

        let plain_port = free_port();
        let mut tls_port = free_port();
        while tls_port == plain_port {
            tls_port = free_port();
        }
        let r = root.display();
        let conf = format!(
            r#"base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{r}/server.pem
ssl_key = <{r}/server.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login apop
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = {r}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={r}/home
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"#
        );
        let conf_path = root.join("dovecot.conf");
        fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let out = fs::File::create(root.join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawning dovecot: {e}"))?;
        let mut d = Dovecot {
            dir,
            child: Some(child),
            plain_port,
            tls_port,
            ca_file,
            maildir,
            counter: AtomicU64::new(0),
            mail_uid,
            mail_gid,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !d.greets() {
            if Instant::now() > deadline || d.exited() {
                let log = fs::read_to_string(d.dir.path().join("stderr.log")).unwrap_or_default()
                    + &fs::read_to_string(d.dir.path().join("dovecot.log")).unwrap_or_default();
                return Err(format!("dovecot did not greet on port {plain_port}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Does the plain port answer `+OK`? (The port opens before login works.)
    fn greets(&self) -> bool {
        let Ok(s) = TcpStream::connect(("127.0.0.1", self.plain_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("+OK")
    }

    /// The directory holding the config, logs and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `[pop3]` section pointing at this server (plain port for `starttls`/`none`).
    pub fn config(&self, tls: TlsMode) -> Pop3Config {
        let port = if tls == TlsMode::Implicit {
            self.tls_port
        } else {
            self.plain_port
        };
        let text = format!(
            "host = \"localhost\"\nport = {port}\ntls = \"{}\"\nusername = \"{USER}\"\n\
             password_env = \"REBOUND_TEST_POP3_PASSWORD\"\nca_file = \"{}\"\ntimeout = \"10s\"\n\
             poll_interval = \"1s\"\nmailbox = \"test\"\n",
            match tls {
                TlsMode::Implicit => "implicit",
                TlsMode::Starttls => "starttls",
                TlsMode::None => "none",
            },
            self.ca_file.display()
        );
        toml::from_str(&text).unwrap()
    }

    /// The `[pop3]` section as TOML text (for config files handed to the binary).
    pub fn config_toml(&self, tls: TlsMode, password_env: &str) -> String {
        let port = if tls == TlsMode::Implicit {
            self.tls_port
        } else {
            self.plain_port
        };
        let mode = match tls {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        };
        format!(
            "[pop3]\nhost = \"localhost\"\nport = {port}\ntls = \"{mode}\"\nusername = \"{USER}\"\n\
             password_env = \"{password_env}\"\nca_file = \"{}\"\ntimeout = \"10s\"\npoll_interval = \"1s\"\n\
             mailbox = \"test\"\n",
            self.ca_file.display()
        )
    }

    /// Drops one message into the maildir (written to `tmp/`, renamed into `new/`).
    pub fn add_message(&self, raw: &[u8]) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "{}.M{n}P{}.rebound-test",
            1_700_000_000 + n,
            std::process::id()
        );
        let tmp = self.maildir.join("tmp").join(&name);
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(raw).unwrap();
        drop(f);
        chown(&tmp, self.mail_uid, self.mail_gid);
        fs::rename(&tmp, self.maildir.join("new").join(&name)).unwrap();
    }

    /// Drops a file's contents into the maildir.
    pub fn add_file(&self, path: &Path) {
        let mut raw = Vec::new();
        fs::File::open(path).unwrap().read_to_end(&mut raw).unwrap();
        self.add_message(&raw);
    }

    /// Messages in the mailbox now (files in `new/` and `cur/`).
    pub fn message_count(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|d| fs::read_dir(self.maildir.join(d)).map_or(0, |r| r.count()))
            .sum()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes a private CA and a server certificate for `localhost` and 127.0.0.1; returns
/// the CA's PEM path.
fn make_certs(root: &Path) -> PathBuf {
    let p = |name: &str| root.join(name);
    let ext = p("server.ext");
    fs::write(&ext, "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n").unwrap();
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=rebound test CA"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(p("server.pem")));
    // Dovecot's config parser reads the key as root before dropping privileges.
    fs::set_permissions(p("server.key"), fs::Permissions::from_mode(0o600)).unwrap();
    p("ca.pem")
}

/// What Dovecot hands out for a stored LF file: CRLF line endings.
pub fn as_served(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

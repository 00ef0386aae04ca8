//! A private Dovecot POP3 server for one test: started on 127.0.0.1 with two random high
//! ports (plain with STLS, and implicit TLS), a private CA made with `openssl`, one user
//! with a maildir, and a filler that drops messages into it. Stopped when dropped.
//! [`Dovecot::start_imap`] also serves IMAP (package dovecot-imapd) on two more ports
//! (plain with STARTTLS, and implicit TLS); [`imap_available`] says whether it can.
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

/// Is Dovecot's IMAP server installed (and Dovecot not to be skipped)? When not, the
/// calling test is reported as skipped, with the reason.
pub fn imap_available() -> bool {
    if !available() {
        return false;
    }
    if Path::new("/usr/lib/dovecot/imap").exists() {
        return true;
    }
    skip::skip_current(
        "dovecot's IMAP server is not installed (package dovecot-imapd; `make test-deps`)",
    );
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
    /// Port of the plain IMAP listener (offers STARTTLS); 0 without IMAP.
    pub imap_port: u16,
    /// Port of the implicit-TLS IMAP listener; 0 without IMAP.
    pub imaps_port: u16,
    conf_path: PathBuf,
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
        Dovecot::start_with(false)
    }

    /// Starts a private instance serving POP3 and IMAP.
    ///
    /// # Panics
    /// As [`Dovecot::start`].
    pub fn start_imap() -> Dovecot {
        Dovecot::start_with(true)
    }

    /// Starts a private instance serving POP3 and IMAP that also takes XOAUTH2 and
    /// OAUTHBEARER logins, checking each token with a POST to `introspection_url` (Dovecot's
    /// oauth2 passdb: `{"active": true, "username": …}` lets the user in).
    ///
    /// # Panics
    /// As [`Dovecot::start`].
    pub fn start_oauth(introspection_url: &str) -> Dovecot {
        let mut last = String::new();
        for _ in 0..3 {
            match Dovecot::try_start(true, Some(introspection_url)) {
                Ok(d) => return d,
                Err(e) => last = e,
            }
        }
        panic!("starting dovecot: {last}");
    }

    fn start_with(imap: bool) -> Dovecot {
        let mut last = String::new();
        for _ in 0..3 {
            match Dovecot::try_start(imap, None) {
                Ok(d) => return d,
                Err(e) => last = e,
            }
        }
        panic!("starting dovecot: {last}");
    }

    fn try_start(imap: bool, oauth: Option<&str>) -> Result<Dovecot, String> {
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
        let (imap_port, imaps_port) = if imap {
            let mut ports = vec![plain_port, tls_port];
            while ports.len() < 4 {
                let p = free_port();
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            (ports[2], ports[3])
        } else {
            (0, 0)
        };
        let r = root.display();
        let (mechanisms, oauth_passdb) = match oauth {
            Some(url) => {
                fs::write(
                    root.join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\n\
                         force_introspection = yes\nusername_attribute = username\n\
                         active_attribute = active\nactive_value = true\n"
                    ),
                )
                .map_err(|e| e.to_string())?;
                (
                    "plain login apop xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                         args = {r}/dovecot-oauth2.conf.ext\n}}\n"
                    ),
                )
            }
            None => ("plain login apop", String::new()),
        };
        let protocols = if imap { "pop3 imap" } else { "pop3" };
        let imap_service = if imap {
            format!(
                r#"service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"#
            )
        } else {
            String::new()
        };
        let conf = format!(
            r#"base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
ssl = yes
ssl_cert = <{r}/server.pem
ssl_key = <{r}/server.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
{oauth_passdb}passdb {{
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
{imap_service}"#
        );
        let conf_path = root.join("dovecot.conf");
        fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut d = Dovecot {
            dir,
            child: None,
            plain_port,
            tls_port,
            ca_file,
            maildir,
            imap_port,
            imaps_port,
            conf_path,
            counter: AtomicU64::new(0),
            mail_uid,
            mail_gid,
        };
        d.launch()?;
        Ok(d)
    }

    /// Starts the server process on the instance's config and waits for its greetings.
    fn launch(&mut self) -> Result<(), String> {
        let root = self.dir.path().to_path_buf();
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("stderr.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&self.conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawning dovecot: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.greets() || (self.imap_port != 0 && !self.imap_greets()) {
            if Instant::now() > deadline || self.exited() {
                let log = fs::read_to_string(root.join("stderr.log")).unwrap_or_default()
                    + &fs::read_to_string(root.join("dovecot.log")).unwrap_or_default();
                return Err(format!(
                    "dovecot did not greet on port {}: {log}",
                    self.plain_port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server and starts it again on the same ports and mail (connections
    /// are dropped).
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        // The mail processes outlive their master: end them too, as a host restart does.
        if let Some(child) = &self.child {
            let master = child.id().to_string();
            for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // `pid (comm) state ppid …`; comm may hold spaces, so split after `)`.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1));
                if ppid == Some(master.as_str()) {
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(entry.file_name())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        self.stop();
        let mut last = String::new();
        for _ in 0..3 {
            match self.launch() {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.stop();
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
        panic!("restarting dovecot: {last}");
    }

    /// Does the plain IMAP port answer `* OK`?
    fn imap_greets(&self) -> bool {
        let Ok(s) = TcpStream::connect(("127.0.0.1", self.imap_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("* OK")
    }

    /// The `[imap]` section as TOML text (for config files handed to the binary), with
    /// `extra` lines appended.
    pub fn imap_toml(&self, tls: TlsMode, password_env: &str, extra: &str) -> String {
        let (port, mode) = match tls {
            TlsMode::Implicit => (self.imaps_port, "implicit"),
            TlsMode::Starttls => (self.imap_port, "starttls"),
            TlsMode::None => (self.imap_port, "none"),
        };
        format!(
            "[imap]\nhost = \"localhost\"\nport = {port}\ntls = \"{mode}\"\nusername = \"{USER}\"\n\
             password_env = \"{password_env}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n\
             mailbox = \"imap-test\"\n{extra}\n",
            self.ca_file.display()
        )
    }

    /// A `[imap]` section pointing at this server, with `extra` TOML lines.
    pub fn imap_config(&self, tls: TlsMode, extra: &str) -> rebound::config::ImapConfig {
        let text = self.imap_toml(tls, "REBOUND_TEST_IMAP_PASSWORD", extra);
        let text = text.strip_prefix("[imap]\n").unwrap_or(&text);
        toml::from_str(text).unwrap()
    }

    /// The messages of maildir folder `folder` (`""`: INBOX), files in `new/` and `cur/`.
    pub fn folder_count(&self, folder: &str) -> usize {
        let dir = if folder.is_empty() {
            self.maildir.clone()
        } else {
            self.maildir.join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|d| fs::read_dir(dir.join(d)).map_or(0, |r| r.count()))
            .sum()
    }

    /// Runs `doveadm ARGS…` against this instance; returns its stdout.
    ///
    /// # Panics
    /// When it fails.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf_path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running doveadm: {e}"));
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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

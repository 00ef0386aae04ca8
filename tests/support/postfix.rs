//! A private Postfix instance for one test: an MTA on 127.0.0.1 that relays mail for
//! chosen test domains to chosen loopback SMTP servers, and turns their refusals into
//! genuine RFC 3464 delivery status notifications. Stopped (and its queue removed) when
//! dropped.
//!
//! Include it from a test file with `#[path = "support/postfix.rs"] mod postfix;`.
//!
//! Needs `postfix` (package postfix, 3.x) and root (the daemons run as `postfix`). A
//! test that cannot start it fails with the reason; with `REBOUND_SKIP_POSTFIX=1`, or
//! without Postfix installed, [`available`] reports the test as skipped
//! (`support/skip.rs`: visible, and a failure under `CI=true`) and the test returns.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "skip.rs"]
mod skip;

/// Is Postfix installed (and not to be skipped)? When not, the calling test is reported as
/// skipped, with the reason.
pub fn available() -> bool {
    if std::env::var_os("REBOUND_SKIP_POSTFIX").is_some() {
        skip::skip_current("REBOUND_SKIP_POSTFIX is set");
        return false;
    }
    if Path::new("/usr/sbin/postfix").exists() {
        return true;
    }
    skip::skip_current("/usr/sbin/postfix is not installed (package postfix; `make test-deps`)");
    false
}

/// A running private Postfix.
pub struct Postfix {
    dir: tempfile::TempDir,
    running: bool,
    /// The port its SMTP server listens on (127.0.0.1).
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `virtual` delivery settings for a maildir (empty without one).
fn virtual_cf(maildir: Option<(&str, &Path)>) -> String {
    use std::os::unix::fs::MetadataExt;
    let Some((domain, dir)) = maildir else {
        return String::new();
    };
    let meta = std::fs::metadata(dir).expect("the maildir exists");
    // A trailing slash makes the virtual agent write maildir format.
    format!(
        "virtual_mailbox_domains = {domain}\n\
         virtual_mailbox_base = /\n\
         virtual_mailbox_maps = inline:{{@{domain}={}/}}\n\
         virtual_uid_maps = static:{}\n\
         virtual_gid_maps = static:{}\n\
         virtual_minimum_uid = 1\n",
        dir.display().to_string().trim_start_matches('/'),
        meta.uid(),
        meta.gid()
    )
}

const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
virtual   unix  -       n       n       -       -       virtual
";

impl Postfix {
    /// Starts an instance that relays each `(domain, port)` route to `[127.0.0.1]:port`.
    /// A temporary failure bounces at once (`maximal_queue_lifetime = 0`).
    ///
    /// # Panics
    /// When Postfix does not come up within 20 seconds (the panic shows its log).
    pub fn start(routes: &[(&str, u16)]) -> Postfix {
        Postfix::start_with(routes, None)
    }

    /// Like [`Postfix::start`], and mail for `maildir.0` (a domain) is delivered by
    /// Postfix's `virtual` agent into the maildir `maildir.1`, as the user who owns it.
    ///
    /// # Panics
    /// As [`Postfix::start`].
    pub fn start_with(routes: &[(&str, u16)], maildir: Option<(&str, &Path)>) -> Postfix {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let port = free_port();
        let transport: Vec<String> = routes
            .iter()
            .map(|(dom, p)| format!("{dom}=smtp:[127.0.0.1]:{p}"))
            .collect();
        let relay: Vec<&str> = routes.iter().map(|(dom, _)| *dom).collect();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = mta.rebound.test\n\
             mydomain = rebound.test\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             relay_domains = {relay}\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             transport_maps = inline:{{{transport}}}\n\
             smtp_dns_support_level = disabled\n\
             smtp_tls_security_level = none\n\
             maximal_queue_lifetime = 0\n\
             bounce_queue_lifetime = 0\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             biff = no\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {dir}\n\
             {virtual}",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            relay = relay.join(", "),
            transport = transport.join(","),
            log = d.join("maillog").display(),
            dir = d.display(),
            virtual = virtual_cf(maildir),
        );
        let etc = d.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("queue")).unwrap();
        std::fs::write(etc.join("main.cf"), main_cf).unwrap();
        let master = format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF}");
        std::fs::write(etc.join("master.cf"), master).unwrap();
        // The daemons run as postfix and must be able to reach their directories.
        let _ = Command::new("chmod")
            .args(["755", d.to_str().unwrap()])
            .status();
        let _ = Command::new("chown")
            .args(["postfix", d.join("data").to_str().unwrap()])
            .status();
        let _ = Command::new("chmod")
            .args(["755", d.join("queue").to_str().unwrap()])
            .status();
        let mut pf = Postfix {
            dir,
            running: false,
            port,
        };
        let out = pf.postfix(&["start"]);
        assert!(out.0, "postfix start failed: {}\n{}", out.1, pf.log());
        pf.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("220") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "postfix did not greet: {}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn postfix(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.config_dir())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running postfix");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Stops the instance (also done on drop).
    pub fn stop(&mut self) {
        if self.running {
            let _ = self.postfix(&["stop"]);
            self.running = false;
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Hostile guest: reads the wall clock, a file and an environment variable, connects to
//! `config.connect` over TCP, resolves a name and sleeps an hour. The sandbox links WASI's
//! clocks, file system and sockets (other languages' runtimes import them) but grants
//! nothing: the guest reports what it got as the diagnostic of one recipient
//! (`probe@example.org`), and the test checks that every attempt came back empty, and that
//! the call returned within its time cap.

use std::time::{Duration, Instant, SystemTime};

use rebound_sdk::{Decision, Message, Policy, PolicyError, Reason, RecipientVerdict, Verdict};

struct NoCapabilities;

impl Policy for NoCapabilities {
    fn evaluate(_message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        let clock = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs().to_string(),
            Err(_) => "before-epoch".into(),
        };
        let file = match std::fs::read("/etc/passwd") {
            Ok(bytes) => format!("read {} bytes", bytes.len()),
            Err(_) => "denied".into(),
        };
        let env = std::env::var("PATH").map_or_else(|_| "none".into(), |v| v);
        let target = rebound_sdk::config("connect").unwrap_or_else(|| "127.0.0.1:1".into());
        let tcp = match std::net::TcpStream::connect(target.as_str()) {
            Ok(_) => "connected".into(),
            Err(_) => "denied".to_owned(),
        };
        let dns = match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
            Ok(mut a) => format!("resolved {:?}", a.next()),
            Err(_) => "denied".to_owned(),
        };
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(3600));
        let slept = start.elapsed().as_secs();
        let report =
            format!("clock={clock} file={file} env={env} tcp={tcp} dns={dns} slept={slept}");
        let probe = RecipientVerdict::new("probe@example.org", Reason::Undefined)
            .with_diagnostic(&report);
        Ok(Decision::Replace(Verdict::bounce(vec![probe])))
    }
}

rebound_sdk::export!(NoCapabilities);

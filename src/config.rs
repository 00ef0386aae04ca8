//! Configuration: one TOML file (`rebound.toml`) deserialised into [`Config`].
//!
//! Every struct refuses unknown keys, so a misspelt key fails at start-up. Durations are
//! human strings (`"30s"`, `"5m"`, `"30d"`), sizes are `"25MB"`-style strings, secrets
//! come from environment variables named in the file and never appear in `Debug` output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading config {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, in the message (not also a `source()`, which would print it twice
        /// in an error chain).
        cause: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("parsing config {path}: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (in the message, not also a `source()`).
        cause: toml::de::Error,
    },
    /// A `[[notify]]` entry is inconsistent (what is wrong is in the message).
    #[error("[[notify]] {0}")]
    Notify(String),
    /// `[api] public_url` is not an `http(s)://host[:port][/path]` base.
    #[error(
        "[api] public_url = {0:?}: use the address recipients reach `rebound serve` at, \
         like \"https://rebound.example.com\" (no query or fragment)"
    )]
    PublicUrl(String),
    /// An environment variable named by the config is not set.
    #[error("environment variable {0} (named in the config) is not set")]
    MissingEnv(String),
    /// `auth` and the keys it needs do not fit together.
    #[error("[{section}] {reason}")]
    Auth {
        /// `pop3` or `imap`.
        section: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `tls = "none"` for a host that is not a loopback address: the password (POP3 PASS,
    /// SMTP AUTH) and the mail would cross the network in clear.
    #[error(
        "[{section}] tls = \"none\" is allowed only for a loopback host (localhost, 127.0.0.1, ::1), \
         not {host:?}: use \"starttls\" or \"implicit\""
    )]
    PlaintextHost {
        /// `pop3`, `imap` or `smtp`.
        section: &'static str,
        /// The configured host.
        host: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where recipients, events and campaigns are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The bounce mailbox; the poller runs only when this section is present.
    pub pop3: Option<Pop3Config>,
    /// An IMAP bounce folder (beside or instead of `[pop3]`); its source runs only when
    /// this section is present.
    pub imap: Option<ImapConfig>,
    /// The SMTP relay; sending works only when this section is present.
    pub smtp: Option<SmtpConfig>,
    /// The policy chain, in order.
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
    /// Limits applied to every policy module unless it sets its own.
    #[serde(default)]
    pub policy_limits: PolicyLimits,
    /// Recipient state rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// The admin HTTP API of `rebound serve`.
    #[serde(default)]
    pub api: ApiConfig,
    /// Event webhooks: endpoints told of every recipient state change, in order.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// Provider webhooks (`POST /webhooks/{provider}` of `rebound serve`).
    #[serde(default)]
    pub webhooks: WebhooksConfig,
}

impl Config {
    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`].
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|cause| Error::Read {
            path: path.to_owned(),
            cause,
        })?;
        let config = Config::from_toml(&text).map_err(|cause| Error::Parse {
            path: path.to_owned(),
            cause,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: `tls = "none"` only for a loopback host.
    ///
    /// # Errors
    /// [`Error::PlaintextHost`].
    pub fn validate(&self) -> Result<()> {
        if let Some(pop3) = &self.pop3 {
            check_plaintext("pop3", &pop3.host, pop3.tls)?;
            check_auth("pop3", &pop3.login())?;
        }
        if let Some(imap) = &self.imap {
            check_plaintext("imap", &imap.host, imap.tls)?;
            check_auth("imap", &imap.login())?;
        }
        if let Some(smtp) = &self.smtp {
            check_plaintext("smtp", &smtp.host, smtp.tls)?;
        }
        if let Some(url) = &self.api.public_url
            && public_url_host(url).is_none()
        {
            return Err(Error::PublicUrl(url.clone()));
        }
        let mut names = std::collections::BTreeSet::new();
        for n in &self.notify {
            n.validate()?;
            let name = n.endpoint_name();
            if !names.insert(name.clone()) {
                return Err(Error::Notify(format!(
                    "two [[notify]] endpoints are named {name:?}: give each its own `name`"
                )));
            }
        }
        Ok(())
    }

    /// Parses config text.
    pub fn from_toml(text: &str) -> std::result::Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

/// The host (`name` or `name:port`) of an `[api] public_url`, when it is an
/// `http(s)://` base without query, fragment or user.
pub fn public_url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    let clean = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    (!host.is_empty() && host.chars().all(clean) && !rest.contains(['?', '#', ' '])).then_some(host)
}

/// Reads a secret from the environment variable the config names.
///
/// # Errors
/// [`Error::MissingEnv`] when it is not set.
pub fn secret_from_env(var: &str) -> Result<String> {
    std::env::var(var).map_err(|_| Error::MissingEnv(var.to_owned()))
}

/// Is `host` this machine's loopback interface: `localhost` (RFC 6761), or an IP literal
/// in 127.0.0.0/8 or `::1` (bracketed or not)? Names are not resolved: what a name resolves
/// to can change after the check.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_end_matches('.');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = h
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(h);
    literal
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `tls = "none"` is refused for any host but a loopback one ([`is_loopback_host`]).
///
/// # Errors
/// [`Error::PlaintextHost`] naming the section and the host.
pub fn check_plaintext(section: &'static str, host: &str, tls: TlsMode) -> Result<()> {
    if tls == TlsMode::None && !is_loopback_host(host) {
        return Err(Error::PlaintextHost {
            section,
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://rebound.db` (default), `sqlite::memory:`, or
    /// `postgres://user@host:port/database` for a store that several hosts share
    /// (`?sslmode=require` for TLS; the password from `PGPASSWORD` or `~/.pgpass`).
    #[serde(default = "StoreConfig::default_url")]
    pub url: String,
    /// How long the mailbox poller keeps every message it records, compressed, for
    /// `rebound events --raw` and reprocessing (default 90d; `0`: none is kept).
    #[serde(
        default = "StoreConfig::default_keep_raw",
        deserialize_with = "duration"
    )]
    pub keep_raw: Duration,
}

impl StoreConfig {
    fn default_url() -> String {
        "sqlite://rebound.db".into()
    }
    fn default_keep_raw() -> Duration {
        Duration::from_secs(90 * 86_400)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreConfig::default_url(),
            keep_raw: StoreConfig::default_keep_raw(),
        }
    }
}

/// How a client connection is secured.
///
/// POP3 and SMTP verify a server's certificate the same way: with the platform's verifier
/// (`rustls-platform-verifier`: the system's trust store, e.g. `/etc/ssl/certs` or
/// `SSL_CERT_FILE` on Linux, the OS verifier on macOS and Windows), plus the section's
/// `ca_file` when set. The system store is the one the operator already manages (an
/// internal CA added there, a distrusted root removed by an OS update) without rebuilding
/// rebound; a host without one (a minimal container) needs `ca_file` or the
/// `ca-certificates` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (POP3 995, SMTP 465).
    Implicit,
    /// Plain connection upgraded with STLS / STARTTLS.
    Starttls,
    /// No TLS: only for a loopback host (`localhost`, 127.0.0.0/8, `::1`); any other host
    /// is refused when the config is loaded and when connecting.
    None,
}

/// `[pop3]`: the bounce mailbox.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3Config {
    /// Server host name.
    pub host: String,
    /// Server port (995 for implicit TLS, 110 otherwise).
    pub port: u16,
    /// `implicit`, `starttls` or `none`.
    pub tls: TlsMode,
    /// Login name.
    pub username: String,
    /// Name of the environment variable holding the password (`auth = "password"`).
    #[serde(default)]
    pub password_env: String,
    /// How to log in: `password` (default: the password of `password_env`), `xoauth2` or
    /// `oauthbearer` (SASL with an OAuth 2.0 access token from `token_command` or the
    /// `oauth2` table).
    #[serde(default)]
    pub auth: AuthMethod,
    /// A program and its arguments (`["prog", "arg", …]`) that prints an access token as
    /// the first line of its output; run for each login (with `timeout`).
    pub token_command: Option<Vec<String>>,
    /// The refresh-token flow that gets access tokens (instead of `token_command`).
    pub oauth2: Option<OAuth2Config>,
    /// An extra trust root (PEM), trusted besides the system's roots (see `TlsMode`).
    pub ca_file: Option<PathBuf>,
    /// Time between polls (default 5m).
    #[serde(
        default = "Pop3Config::default_poll_interval",
        deserialize_with = "duration"
    )]
    pub poll_interval: Duration,
    /// Delete (DELE) a message once its verdict is committed (default true).
    #[serde(default = "yes")]
    pub delete_processed: bool,
    /// Messages larger than this are left on the server and reported (default 25MB).
    #[serde(
        default = "Pop3Config::default_max_message_size",
        deserialize_with = "byte_size"
    )]
    pub max_message_size: u64,
    /// Timeout for every read and write (default 30s).
    #[serde(default = "Pop3Config::default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// At most this many messages per poll (default 1000).
    #[serde(default = "Pop3Config::default_batch_limit")]
    pub batch_limit: usize,
    /// Name of this mailbox in the ledger (default `username@host`).
    pub mailbox: Option<String>,
    /// Leave ordinary mail (kind `other`, and messages that could not be parsed) on the
    /// server for a person to read, even with `delete_processed`; it is in the ledger, so
    /// it is not processed again (default false: delete it too).
    #[serde(default)]
    pub keep_other: bool,
    /// A message whose fetch failed this many times (the server dropped the connection,
    /// answered `-ERR`, or sent more than it listed) is quarantined: left on the server,
    /// no longer fetched, and named in every pass summary, until it is released
    /// (`rebound poll release`, `POST /quarantine`) (default 3; at least 1).
    #[serde(default = "Pop3Config::default_max_fetch_failures")]
    pub max_fetch_failures: u32,
}

impl Pop3Config {
    /// The keys saying how to log in.
    pub fn login(&self) -> Login<'_> {
        Login {
            username: &self.username,
            auth: self.auth,
            password_env: &self.password_env,
            token_command: self.token_command.as_deref(),
            oauth2: self.oauth2.as_ref(),
            timeout: self.timeout,
        }
    }

    fn default_max_fetch_failures() -> u32 {
        3
    }
    fn default_poll_interval() -> Duration {
        Duration::from_secs(300)
    }
    fn default_max_message_size() -> u64 {
        25 * 1_000_000
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }
    fn default_batch_limit() -> usize {
        1000
    }
}

impl std::fmt::Debug for Pop3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .finish_non_exhaustive()
    }
}

/// How a mailbox source logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// The password of `password_env` (POP3 USER/PASS, IMAP LOGIN).
    #[default]
    Password,
    /// SASL XOAUTH2 with an OAuth 2.0 access token.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth 2.0 access token.
    Oauthbearer,
}

impl AuthMethod {
    /// The SASL mechanism's name (`None` for a password).
    pub fn mechanism(self) -> Option<&'static str> {
        match self {
            AuthMethod::Password => None,
            AuthMethod::Xoauth2 => Some("XOAUTH2"),
            AuthMethod::Oauthbearer => Some("OAUTHBEARER"),
        }
    }
}

/// `[pop3.oauth2]` / `[imap.oauth2]`: access tokens from a refresh token (RFC 6749 §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The provider's token endpoint (`https://…`; `http://` for a loopback host only).
    pub token_url: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// Name of the environment variable holding the client secret (none: a public client).
    pub client_secret_env: Option<String>,
    /// Name of the environment variable holding the refresh token.
    pub refresh_token_env: String,
    /// The scope asked for (none: the provider's default for the refresh token).
    pub scope: Option<String>,
}

/// The login keys of a `[pop3]` or `[imap]` section, read together.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The login name.
    pub username: &'a str,
    /// How.
    pub auth: AuthMethod,
    /// The password's variable.
    pub password_env: &'a str,
    /// The token program.
    pub token_command: Option<&'a [String]>,
    /// The refresh-token flow.
    pub oauth2: Option<&'a OAuth2Config>,
    /// The section's timeout (also the token program's).
    pub timeout: Duration,
}

/// `auth = "password"` needs `password_env`; the OAuth methods need exactly one of
/// `token_command` and `oauth2`.
///
/// # Errors
/// [`Error::Auth`].
pub fn check_auth(section: &'static str, login: &Login<'_>) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::Auth {
            section,
            reason: reason.to_owned(),
        })
    };
    match login.auth {
        AuthMethod::Password if login.password_env.is_empty() => {
            fail("auth = \"password\" needs password_env")
        }
        AuthMethod::Password => Ok(()),
        _ => match (login.token_command, login.oauth2) {
            (Some([]), _) => fail("token_command is empty: name the program to run"),
            (Some(_), None) | (None, Some(_)) => {
                if let Some(o) = login.oauth2
                    && o.token_url.starts_with("http://")
                    && !public_url_host(&o.token_url)
                        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
                        .is_some_and(is_loopback_host)
                {
                    return fail(
                        "oauth2 token_url must be https:// (http:// only for a loopback host)",
                    );
                }
                Ok(())
            }
            (None, None) => fail("auth by OAuth 2.0 needs token_command or an oauth2 table"),
            (Some(_), Some(_)) => fail("set token_command or an oauth2 table, not both"),
        },
    }
}

/// `[imap]`: a bounce folder on an IMAP server, read with IDLE when the server offers it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// Server host name.
    pub host: String,
    /// Server port (993 for implicit TLS, 143 otherwise).
    pub port: u16,
    /// `implicit`, `starttls` or `none`.
    pub tls: TlsMode,
    /// Login name.
    pub username: String,
    /// Name of the environment variable holding the password (`auth = "password"`).
    #[serde(default)]
    pub password_env: String,
    /// How to log in: `password` (default: the password of `password_env`), `xoauth2` or
    /// `oauthbearer` (SASL with an OAuth 2.0 access token from `token_command` or the
    /// `oauth2` table).
    #[serde(default)]
    pub auth: AuthMethod,
    /// A program and its arguments (`["prog", "arg", …]`) that prints an access token as
    /// the first line of its output; run for each login (with `timeout`).
    pub token_command: Option<Vec<String>>,
    /// The refresh-token flow that gets access tokens (instead of `token_command`).
    pub oauth2: Option<OAuth2Config>,
    /// An extra trust root (PEM), trusted besides the system's roots (see `TlsMode`).
    pub ca_file: Option<PathBuf>,
    /// The folder read (default `INBOX`).
    #[serde(default = "ImapConfig::default_folder")]
    pub folder: String,
    /// Move a message here once its verdict is committed, instead of deleting it
    /// (created when missing).
    pub processed_folder: Option<String>,
    /// Move ordinary mail (kind `other`) and messages that could not be parsed here once
    /// recorded, instead of `processed_folder` or deleting them (created when missing).
    pub unrecognised_folder: Option<String>,
    /// Wait for new mail with IDLE (RFC 2177) when the server offers it, instead of
    /// polling every `poll_interval` (default true).
    #[serde(default = "yes")]
    pub idle: bool,
    /// Time between passes without IDLE; with IDLE the longest wait between two passes
    /// (capped at 29 minutes) and the longest retry backoff (default 5m).
    #[serde(
        default = "Pop3Config::default_poll_interval",
        deserialize_with = "duration"
    )]
    pub poll_interval: Duration,
    /// Delete (`\Deleted` + UID EXPUNGE) a recorded message that no folder above takes
    /// (default true; false: it stays, and the ledger keeps it from being counted again).
    #[serde(default = "yes")]
    pub delete_processed: bool,
    /// Messages larger than this (RFC822.SIZE) are left in the folder and reported
    /// (default 25MB).
    #[serde(
        default = "Pop3Config::default_max_message_size",
        deserialize_with = "byte_size"
    )]
    pub max_message_size: u64,
    /// Timeout for every command (default 30s).
    #[serde(default = "Pop3Config::default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// At most this many messages fetched per pass (default 1000).
    #[serde(default = "Pop3Config::default_batch_limit")]
    pub batch_limit: usize,
    /// Name of this folder in the ledger (default `username@host/FOLDER`).
    pub mailbox: Option<String>,
    /// Leave ordinary mail (kind `other`, and messages that could not be parsed) in the
    /// folder for a person to read when no `unrecognised_folder` is set, even with
    /// `delete_processed` or `processed_folder` (default false).
    #[serde(default)]
    pub keep_other: bool,
    /// A message whose fetch failed this many times is quarantined: left in the folder,
    /// no longer fetched, until it is released (default 3; at least 1).
    #[serde(default = "Pop3Config::default_max_fetch_failures")]
    pub max_fetch_failures: u32,
}

impl ImapConfig {
    /// The keys saying how to log in.
    pub fn login(&self) -> Login<'_> {
        Login {
            username: &self.username,
            auth: self.auth,
            password_env: &self.password_env,
            token_command: self.token_command.as_deref(),
            oauth2: self.oauth2.as_ref(),
            timeout: self.timeout,
        }
    }

    fn default_folder() -> String {
        "INBOX".into()
    }
}

impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

/// One rate limit of `[smtp]`: either a table (`[[smtp.rate_limit]]` with `messages` and
/// `per`) or the string form (`rate_limit = ["14/s", "50000/day", "100/min,max_burst=10"]`),
/// which can also set the burst and the window mode (see `ratelimit::RateSpec`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateLimitConfig {
    /// `"14/s"`, `"50000/day"`, `"100/min,max_burst=10"`.
    Spec(String),
    /// At most `messages` per `per`.
    Table(RateLimitTable),
}

/// The table form of a rate limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitTable {
    /// How many messages.
    pub messages: u32,
    /// In how long (`"1s"`, `"24h"`).
    #[serde(deserialize_with = "duration")]
    pub per: Duration,
}

/// `[smtp]`: the relay used for sending.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// `implicit`, `starttls` or `none` (a loopback host only).
    pub tls: TlsMode,
    /// Login name; no AUTH when absent.
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// An extra trust root (PEM), trusted besides the system's roots (see `TlsMode`).
    pub ca_file: Option<PathBuf>,
    /// The From header of campaigns that do not set one.
    pub from: String,
    /// VERP domain: envelope senders are `bounces+TOKEN@bounce_domain`.
    pub bounce_domain: String,
    /// Name of the environment variable holding the VERP signing secret.
    #[serde(default = "SmtpConfig::default_verp_secret_env")]
    pub verp_secret_env: String,
    /// Concurrent workers (default 4).
    #[serde(default = "SmtpConfig::default_workers")]
    pub workers: usize,
    /// Recipients a worker claims at once, at most (default 50); under a rate limit about
    /// one second of the worker's share of it.
    #[serde(default = "SmtpConfig::default_max_items_per_batch")]
    pub max_items_per_batch: usize,
    /// Results a worker may have sent but not yet written, at most (default 5): what a
    /// killed run sends twice, per worker. Results are written as soon as the store
    /// takes them, every worker's in one transaction.
    #[serde(default = "SmtpConfig::default_send_batch_size")]
    pub send_batch_size: usize,
    /// The rate limits, all enforced at once.
    #[serde(default)]
    pub rate_limit: Vec<RateLimitConfig>,
    /// Timeout of one SMTP command (default 30s).
    #[serde(default = "SmtpConfig::default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// How long to wait for the answer to the final "." of DATA (default 10m, RFC 5321
    /// §4.5.3.2.6). No answer by then (or a connection lost after the dot) leaves the send
    /// `sent` with `maybe_delivered` set: counted, never sent again automatically.
    #[serde(
        default = "SmtpConfig::default_data_timeout",
        deserialize_with = "duration"
    )]
    pub data_timeout: Duration,
    /// Attempts for a temporary (4xx) failure before it counts as a soft bounce (default 5).
    #[serde(default = "SmtpConfig::default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before retrying a recipient after a 4xx answer; doubled for every further
    /// attempt (default 1m).
    #[serde(
        default = "SmtpConfig::default_retry_delay",
        deserialize_with = "duration"
    )]
    pub retry_delay: Duration,
    /// Pause of all workers after a throttling answer (421, 454, rate-limit 4xx); doubled
    /// while the throttling goes on, at most 5m (default 1s).
    #[serde(
        default = "SmtpConfig::default_throttle_delay",
        deserialize_with = "duration"
    )]
    pub throttle_delay: Duration,
    /// A run stops (resumable, with the relay's last answer in the error) when every
    /// answer has been throttling (421, 454, a rate-limit 4xx, a 4xx to MAIL, a
    /// sender-address 4xx like `450 4.1.8`, a lost connection) for this long with no message
    /// accepted in between: a 4xx that never ends is not a rate limit (default 30m).
    #[serde(
        default = "SmtpConfig::default_max_throttled_time",
        deserialize_with = "duration"
    )]
    pub max_throttled_time: Duration,
    /// The EHLO name (default: this host's name).
    pub hello_name: Option<String>,
    /// DKIM signing of campaign messages; none without this section.
    pub dkim: Option<DkimConfig>,
}

/// `[smtp.dkim]`: the key campaign messages are signed with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    /// The signing domain (`d=`), normally the From domain or its parent (DMARC alignment).
    pub domain: String,
    /// The selector (`s=`): the public key is the TXT record `selector._domainkey.domain`.
    pub selector: String,
    /// The private key, PEM: RSA (PKCS#1 or PKCS#8, at least 1024 bits) signs
    /// `rsa-sha256`, Ed25519 (PKCS#8) signs `ed25519-sha256`.
    pub private_key_file: PathBuf,
}

impl SmtpConfig {
    fn default_verp_secret_env() -> String {
        "REBOUND_VERP_SECRET".into()
    }
    fn default_workers() -> usize {
        4
    }
    fn default_max_items_per_batch() -> usize {
        50
    }
    fn default_send_batch_size() -> usize {
        5
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }
    fn default_data_timeout() -> Duration {
        Duration::from_secs(600)
    }
    fn default_max_attempts() -> u32 {
        5
    }
    fn default_retry_delay() -> Duration {
        Duration::from_secs(60)
    }
    fn default_throttle_delay() -> Duration {
        Duration::from_secs(1)
    }
    fn default_max_throttled_time() -> Duration {
        Duration::from_secs(1800)
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from)
            .field("bounce_domain", &self.bounce_domain)
            .field("workers", &self.workers)
            .field("rate_limit", &self.rate_limit)
            .field("dkim", &self.dkim)
            .finish_non_exhaustive()
    }
}

/// What to do when a policy module fails (traps, times out, returns garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Keep the verdict from before this module and go on (default).
    #[default]
    Skip,
    /// Stop: leave the message unprocessed (it stays in the mailbox).
    Fail,
}

/// One `[[policy]]` module of the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name; verdicts it changes say `decided_by = "policy:<name>"`.
    pub name: String,
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// Memory cap for this module (default from `[policy_limits]`).
    #[serde(default, deserialize_with = "opt_byte_size")]
    pub max_memory: Option<u64>,
    /// Time cap per call for this module (default from `[policy_limits]`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// What a failure does.
    #[serde(default)]
    pub on_error: OnError,
    /// Key/value settings handed to the module, in order.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

/// `[policy_limits]`: defaults for every module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLimits {
    /// Memory cap (default 64MB).
    #[serde(
        default = "PolicyLimits::default_memory",
        deserialize_with = "byte_size"
    )]
    pub memory: u64,
    /// Time cap per call (default 50ms).
    #[serde(default = "PolicyLimits::default_time", deserialize_with = "duration")]
    pub time: Duration,
    /// Failures in a row after which a module is disabled (default 5).
    #[serde(default = "PolicyLimits::default_max_failures")]
    pub max_failures: u32,
    /// Calls after which an instance is recycled (default 1000).
    #[serde(default = "PolicyLimits::default_recycle_after")]
    pub recycle_after: u32,
    /// Where compiled components are cached (default `.rebound/cache`).
    #[serde(default = "PolicyLimits::default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Most keys a policy's `state` holds (default 1 000 000: a key per recipient of a
    /// large list).
    #[serde(default = "PolicyLimits::default_state_max_keys")]
    pub state_max_keys: u64,
    /// Longest value a policy may put in its `state` (default 16KB).
    #[serde(
        default = "PolicyLimits::default_state_max_value",
        deserialize_with = "byte_size"
    )]
    pub state_max_value: u64,
}

impl PolicyLimits {
    fn default_memory() -> u64 {
        64 * 1024 * 1024
    }
    fn default_time() -> Duration {
        Duration::from_millis(50)
    }
    fn default_max_failures() -> u32 {
        5
    }
    fn default_recycle_after() -> u32 {
        1000
    }
    fn default_cache_dir() -> PathBuf {
        PathBuf::from(".rebound/cache")
    }
    fn default_state_max_keys() -> u64 {
        1_000_000
    }
    fn default_state_max_value() -> u64 {
        16 * 1024
    }
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            memory: Self::default_memory(),
            time: Self::default_time(),
            max_failures: Self::default_max_failures(),
            recycle_after: Self::default_recycle_after(),
            cache_dir: Self::default_cache_dir(),
            state_max_keys: Self::default_state_max_keys(),
            state_max_value: Self::default_state_max_value(),
        }
    }
}

/// What a complaint does to the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComplaintAction {
    /// Mark the recipient complained: no more mail (default).
    #[default]
    Unsubscribe,
    /// Record the event only.
    Ignore,
}

/// `[rules]`: how bounces change a recipient's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Soft-bounced sent messages within the window that make a recipient bounced
    /// (default 3; delay warnings and the final failure of one message count once).
    #[serde(default = "RulesConfig::default_soft_bounces")]
    pub soft_bounces_to_bounce: u32,
    /// The window for soft bounces (default 30d).
    #[serde(default = "RulesConfig::default_window", deserialize_with = "duration")]
    pub soft_bounce_window: Duration,
    /// What a complaint does.
    #[serde(default)]
    pub complaint: ComplaintAction,
    /// Pause a campaign's sends to one destination domain when too many of them are
    /// refused for sender-side reasons (blocklists, spam, reputation, authentication):
    /// `{ threshold = "20%", min_sends = 50, window = "1h" }`. Off when not set.
    #[serde(default)]
    pub pause_on_sender_blocks: Option<PauseRule>,
    /// The complaint rate (complaints over accepted sends, at least
    /// `complaint_rate_min_sends` of them) past which a campaign pauses (default 0.3 %,
    /// Gmail's and Yahoo's limit for bulk senders; `"100%"` never pauses).
    #[serde(
        default = "RulesConfig::default_max_complaint_rate",
        deserialize_with = "share"
    )]
    pub max_complaint_rate: f64,
    /// The complaint rate from which a campaign is flagged and each new complaint logs a
    /// warning (default 0.1 %, the rate Gmail asks senders to stay under).
    #[serde(
        default = "RulesConfig::default_warn_complaint_rate",
        deserialize_with = "share"
    )]
    pub warn_complaint_rate: f64,
    /// Accepted sends below which a campaign's complaint rate is neither flagged nor
    /// paused on (default 1000): two complaints in a hundred sends say little.
    #[serde(default = "RulesConfig::default_complaint_rate_min_sends")]
    pub complaint_rate_min_sends: u64,
}

/// `[rules] pause_on_sender_blocks`: when a campaign's sends to one destination domain
/// (the recipient's domain) pause.
///
/// With at least `min_sends` sends of the campaign to the domain within `window` and
/// sender-blamed refusals of at least `threshold` of them, the campaign's sends to that
/// domain pause for `window` (the queue's claim skips them; other domains go on). They
/// resume by themselves when the window has passed, or at once with
/// `rebound campaigns resume ID [--domain DOMAIN]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRule {
    /// Share of the sends refused for sender reasons that pauses: `"20%"` or `0.2`
    /// (default 20 %).
    #[serde(default = "PauseRule::default_threshold", deserialize_with = "share")]
    pub threshold: f64,
    /// Sends to the domain within the window below which nothing pauses (default 50).
    #[serde(default = "PauseRule::default_min_sends")]
    pub min_sends: u64,
    /// The window refusals and sends are counted in, and how long a pause lasts
    /// (default 1h).
    #[serde(default = "PauseRule::default_window", deserialize_with = "duration")]
    pub window: Duration,
}

impl PauseRule {
    fn default_threshold() -> f64 {
        0.2
    }
    fn default_min_sends() -> u64 {
        50
    }
    fn default_window() -> Duration {
        Duration::from_secs(3600)
    }
}

impl Default for PauseRule {
    fn default() -> Self {
        PauseRule {
            threshold: Self::default_threshold(),
            min_sends: Self::default_min_sends(),
            window: Self::default_window(),
        }
    }
}

/// A share: `"20%"`, `"0.2"` or `0.2`, between 0 and 1.
fn share<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrFloat {
        Str(String),
        Float(f64),
    }
    let v = match StrOrFloat::deserialize(d)? {
        StrOrFloat::Float(f) => f,
        StrOrFloat::Str(s) => {
            let t = s.trim();
            match t.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => t.parse::<f64>(),
            }
            .map_err(|_| {
                serde::de::Error::custom(format!("{s:?} is not a share (\"20%\" or 0.2)"))
            })?
        }
    };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "share {v} is not between 0 and 100 %"
        )))
    }
}

impl RulesConfig {
    fn default_soft_bounces() -> u32 {
        3
    }
    fn default_window() -> Duration {
        Duration::from_secs(30 * 86_400)
    }
    fn default_max_complaint_rate() -> f64 {
        0.003
    }
    fn default_warn_complaint_rate() -> f64 {
        0.001
    }
    fn default_complaint_rate_min_sends() -> u64 {
        1000
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            soft_bounces_to_bounce: Self::default_soft_bounces(),
            soft_bounce_window: Self::default_window(),
            complaint: ComplaintAction::default(),
            pause_on_sender_blocks: None,
            max_complaint_rate: Self::default_max_complaint_rate(),
            warn_complaint_rate: Self::default_warn_complaint_rate(),
            complaint_rate_min_sends: Self::default_complaint_rate_min_sends(),
        }
    }
}

/// `[api]`: the admin HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address (default 127.0.0.1:8025).
    #[serde(default = "ApiConfig::default_listen")]
    pub listen: String,
    /// Name of the environment variable holding the bearer token.
    #[serde(default = "ApiConfig::default_token_env")]
    pub token_env: String,
    /// Where `rebound serve` kept uploaded policies before the store kept them (default
    /// `.rebound/policies`): read once, into a store that holds no policy chain yet.
    #[serde(default = "ApiConfig::default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest accepted upload (default 64MB: a Python policy, CPython inside, is about
    /// 18 MB).
    #[serde(
        default = "ApiConfig::default_max_upload",
        deserialize_with = "byte_size"
    )]
    pub max_upload: u64,
    /// The address recipients reach `rebound serve` at (`https://rebound.example.com`):
    /// campaign messages carry `<public_url>/u/TOKEN` as their one-click unsubscribe link
    /// (RFC 8058; HTTPS for the one-click promise), and its host is one the API answers
    /// to. Unset: messages carry only the `mailto:` unsubscribe.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Host names (or addresses) the API answers to besides loopback names and
    /// addresses and the listen address: the name clients use to reach it. A request
    /// whose `Host` is none of these is refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl ApiConfig {
    fn default_listen() -> String {
        "127.0.0.1:8025".into()
    }
    fn default_token_env() -> String {
        "REBOUND_API_TOKEN".into()
    }
    fn default_data_dir() -> PathBuf {
        PathBuf::from(".rebound/policies")
    }
    fn default_max_upload() -> u64 {
        64 * 1024 * 1024
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: Self::default_listen(),
            token_env: Self::default_token_env(),
            data_dir: Self::default_data_dir(),
            max_upload: Self::default_max_upload(),
            public_url: None,
            allowed_hosts: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The body and authentication a `[[notify]]` endpoint gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// rebound's own JSON event, signed with HMAC-SHA256 (`Rebound-Signature`).
    #[default]
    Rebound,
    /// listmonk's bounce webhook (`POST /webhooks/bounce`), with its API user and token.
    Listmonk,
}

/// `[[notify]]`: one endpoint that gets a POST for each recipient state change it
/// subscribes to, from the store's outbox, retried until it answers 2xx.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The endpoint's name in the outbox, logs and metrics (default: the URL's host and
    /// port). Renaming an endpoint leaves its undelivered rows under the old name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the POSTs go (`http://` or `https://`).
    pub url: String,
    /// The events it gets: `bounced`, `complained`, `unsubscribed`, `reactivated`
    /// (default: all four; for `format = "listmonk"`, bounced and complained).
    #[serde(default)]
    pub events: Option<Vec<crate::store::outbox::NotifyEvent>>,
    /// The environment variable holding the HMAC-SHA256 key of the signature (required
    /// for `format = "rebound"`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The body and authentication (default `rebound`).
    #[serde(default)]
    pub format: NotifyFormat,
    /// listmonk's API user (`format = "listmonk"`).
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the listmonk API user's token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// How long one POST may take, connecting included (default 10s).
    #[serde(
        default = "NotifyConfig::default_timeout",
        deserialize_with = "duration"
    )]
    pub timeout: Duration,
    /// Attempts before a row is given up as dead (default 20; at least 1).
    #[serde(default = "NotifyConfig::default_max_attempts")]
    pub max_attempts: u32,
    /// The wait after the first failure, doubled after each further one (default 1s).
    #[serde(
        default = "NotifyConfig::default_retry_delay",
        deserialize_with = "duration"
    )]
    pub retry_delay: Duration,
    /// The longest wait between two attempts (default 1h).
    #[serde(
        default = "NotifyConfig::default_max_retry_delay",
        deserialize_with = "duration"
    )]
    pub max_retry_delay: Duration,
}

impl std::fmt::Debug for NotifyConfig {
    /// The URL without its user info or query (either may carry a secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("name", &self.endpoint_name())
            .field("format", &self.format)
            .field("events", &self.subscribed())
            .finish_non_exhaustive()
    }
}

impl NotifyConfig {
    fn default_timeout() -> Duration {
        Duration::from_secs(10)
    }
    fn default_max_attempts() -> u32 {
        20
    }
    fn default_retry_delay() -> Duration {
        Duration::from_secs(1)
    }
    fn default_max_retry_delay() -> Duration {
        Duration::from_secs(3600)
    }

    /// The endpoint's name: `name`, else the URL's host (and port, when given).
    pub fn endpoint_name(&self) -> String {
        if let Some(n) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            return n.trim().to_owned();
        }
        match reqwest::Url::parse(&self.url) {
            Ok(u) => match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => self.url.clone(),
            },
            Err(_) => self.url.clone(),
        }
    }

    /// The events the endpoint gets, in [`NotifyEvent::ALL`] order, each once.
    ///
    /// [`NotifyEvent::ALL`]: crate::store::outbox::NotifyEvent::ALL
    pub fn subscribed(&self) -> Vec<crate::store::outbox::NotifyEvent> {
        use crate::store::outbox::NotifyEvent;
        let chosen: &[NotifyEvent] = match (&self.events, self.format) {
            (Some(e), _) => e,
            (None, NotifyFormat::Rebound) => NotifyEvent::ALL,
            (None, NotifyFormat::Listmonk) => &[NotifyEvent::Bounced, NotifyEvent::Complained],
        };
        NotifyEvent::ALL
            .iter()
            .copied()
            .filter(|e| chosen.contains(e))
            .collect()
    }

    /// Checks what the types cannot: an `http(s)` URL, the secrets each format needs,
    /// events listmonk can take, at least one attempt.
    ///
    /// # Errors
    /// [`Error::Notify`].
    pub fn validate(&self) -> Result<()> {
        use crate::store::outbox::NotifyEvent;
        let name = self.endpoint_name();
        let bad = |what: String| Err(Error::Notify(format!("{name:?}: {what}")));
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => return bad(format!("url {:?} is not an http(s):// URL", self.url)),
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout must be more than 0".into());
        }
        if self.events.as_ref().is_some_and(Vec::is_empty) {
            return bad("events is empty: leave it out for every event".into());
        }
        match self.format {
            NotifyFormat::Rebound => {
                if self.secret_env.is_none() {
                    return bad(
                        "format \"rebound\" needs secret_env (the HMAC key's environment variable)"
                            .into(),
                    );
                }
                if self.username.is_some() || self.token_env.is_some() {
                    return bad("username and token_env are for format \"listmonk\"".into());
                }
            }
            NotifyFormat::Listmonk => {
                if self.username.is_none() || self.token_env.is_none() {
                    return bad(
                        "format \"listmonk\" needs username and token_env (its API user and token)"
                            .into(),
                    );
                }
                if let Some(e) = self
                    .subscribed()
                    .into_iter()
                    .find(|e| !matches!(e, NotifyEvent::Bounced | NotifyEvent::Complained))
                {
                    return bad(format!(
                        "listmonk's bounce API takes bounced and complained only, not {e}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[webhooks]`: the providers whose event webhooks `rebound serve` takes at
/// `POST /webhooks/{provider}`; a provider without its section answers 404.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Largest request body taken (default 1MB; larger: 413).
    #[serde(
        default = "WebhooksConfig::default_max_body",
        deserialize_with = "byte_size"
    )]
    pub max_body: u64,
    /// `[webhooks.mailgun]`.
    pub mailgun: Option<MailgunWebhook>,
    /// `[webhooks.ses]`: Amazon SES through an SNS topic.
    pub ses: Option<SesWebhook>,
    /// `[webhooks.sendgrid]`.
    pub sendgrid: Option<SendgridWebhook>,
    /// `[webhooks.postmark]`.
    pub postmark: Option<PostmarkWebhook>,
}

impl WebhooksConfig {
    fn default_max_body() -> u64 {
        1024 * 1024
    }

    /// Whether any provider is configured.
    pub fn any(&self) -> bool {
        self.mailgun.is_some()
            || self.ses.is_some()
            || self.sendgrid.is_some()
            || self.postmark.is_some()
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_body: Self::default_max_body(),
            mailgun: None,
            ses: None,
            sendgrid: None,
            postmark: None,
        }
    }
}

/// `[webhooks.mailgun]`: requests signed with the account's webhook signing key
/// (HMAC-SHA256 of timestamp and token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunWebhook {
    /// Name of the environment variable holding the HTTP webhook signing key.
    pub signing_key_env: String,
}

/// `[webhooks.ses]`: SES notifications delivered by an SNS topic subscription (HTTPS),
/// each signed by SNS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesWebhook {
    /// The topics (ARNs) whose messages are taken; a subscription to another is refused.
    pub topic_arns: Vec<String>,
    /// Host names the signing certificate (and a subscription's SubscribeURL) may be
    /// fetched from; `*` stands for one DNS label. Default `sns.*.amazonaws.com` and
    /// `sns.*.amazonaws.com.cn`.
    #[serde(default = "SesWebhook::default_cert_hosts")]
    pub cert_hosts: Vec<String>,
    /// A PEM file of trust roots added to the system's, for the signing certificate's
    /// chain and the HTTPS fetches (a private CA, or an intermediate the certificate
    /// URL does not serve).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl SesWebhook {
    fn default_cert_hosts() -> Vec<String> {
        vec![
            "sns.*.amazonaws.com".into(),
            "sns.*.amazonaws.com.cn".into(),
        ]
    }
}

/// `[webhooks.sendgrid]`: the signed event webhook (ECDSA P-256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridWebhook {
    /// Name of the environment variable holding the verification key (base64 DER
    /// SubjectPublicKeyInfo, as the SendGrid console shows it).
    pub public_key_env: String,
}

/// `[webhooks.postmark]`: HTTP basic authentication set on the webhook's URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkWebhook {
    /// The user name.
    pub username: String,
    /// Name of the environment variable holding the password.
    pub password_env: String,
}

/// Parses `"30s"`, `"5m"`, `"30d"`, `"50ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses `"25MB"`, `"64MiB"`, `"512k"` or a bare number of bytes.
pub fn parse_byte_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("invalid size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    Str(String),
    Num(u64),
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    match StrOrNum::deserialize(d)? {
        StrOrNum::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        StrOrNum::Num(n) => Ok(Duration::from_secs(n)),
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    match StrOrNum::deserialize(d)? {
        StrOrNum::Str(s) => parse_byte_size(&s).map_err(serde::de::Error::custom),
        StrOrNum::Num(n) => Ok(n),
    }
}

fn opt_byte_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    byte_size(d).map(Some)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn notify_defaults_and_checks() {
        use crate::store::outbox::NotifyEvent;
        let c = Config::from_toml(
            "[[notify]]\nurl = \"https://hooks.example.com:8443/rebound\"\nsecret_env = \"S\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        let n = &c.notify[0];
        assert_eq!(n.endpoint_name(), "hooks.example.com:8443");
        assert_eq!(n.subscribed(), NotifyEvent::ALL);
        assert_eq!(n.format, NotifyFormat::Rebound);
        assert_eq!((n.timeout, n.max_attempts), (Duration::from_secs(10), 20));
        assert!(
            !format!("{n:?}").contains("/rebound"),
            "the URL's path is not shown"
        );

        let lm = Config::from_toml(
            "[[notify]]\nurl = \"https://lists.example.com/webhooks/bounce\"\nformat = \"listmonk\"\n\
             username = \"rebound\"\ntoken_env = \"T\"\n",
        )
        .unwrap();
        lm.validate().unwrap();
        assert_eq!(
            lm.notify[0].subscribed(),
            [NotifyEvent::Bounced, NotifyEvent::Complained]
        );

        for (toml, says) in [
            ("url = \"https://h.example\"\n", "needs secret_env"),
            (
                "url = \"ftp://h.example\"\nsecret_env = \"S\"\n",
                "not an http(s)",
            ),
            (
                "url = \"https://h.example\"\nsecret_env = \"S\"\nmax_attempts = 0\n",
                "at least 1",
            ),
            (
                "url = \"https://h.example\"\nsecret_env = \"S\"\nevents = []\n",
                "events is empty",
            ),
            (
                "url = \"https://h.example\"\nformat = \"listmonk\"\n",
                "needs username",
            ),
            (
                "url = \"https://h.example\"\nformat = \"listmonk\"\nusername = \"u\"\ntoken_env = \"T\"\n\
                 events = [\"reactivated\"]\n",
                "bounced and complained only",
            ),
        ] {
            let c = Config::from_toml(&format!("[[notify]]\n{toml}")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{toml}: {e}");
        }
        let two = "[[notify]]\nurl = \"https://h.example/a\"\nsecret_env = \"S\"\n\
                   [[notify]]\nurl = \"https://h.example/b\"\nsecret_env = \"S\"\n";
        let e = Config::from_toml(two)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("named \"h.example\""), "{e}");
        for bad in [
            "[[notify]]\nurl = \"https://h.example\"\nsecret_env = \"S\"\nsecrett = 1\n",
            "[[notify]]\nurl = \"https://h.example\"\nsecret_env = \"S\"\nevents = [\"opened\"]\n",
            "[[notify]]\nurl = \"https://h.example\"\nsecret_env = \"S\"\nformat = \"mautic\"\n",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plaintext_only_to_a_loopback_host() {
        for h in [
            "localhost",
            "LocalHost.",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
            assert!(check_plaintext("smtp", h, TlsMode::None).is_ok());
        }
        for h in [
            "",
            "h",
            "10.0.0.1",
            "localhost.example.com",
            "::2",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
            let e = check_plaintext("pop3", h, TlsMode::None).unwrap_err();
            assert!(e.to_string().contains(&format!("{h:?}")), "{e}");
        }
        assert!(check_plaintext("smtp", "smtp.example.com", TlsMode::Starttls).is_ok());
        let c = Config::from_toml(
            "[smtp]\nhost=\"smtp.example.com\"\nport=25\ntls=\"none\"\nfrom=\"a@b.c\"\nbounce_domain=\"b.c\"\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.to_string().starts_with("[smtp] tls = \"none\""), "{e}");
    }

    #[test]
    fn imap_section_defaults_and_rejects_unknown_keys() {
        let base = "[imap]\nhost = \"imap.example.org\"\nport = 993\ntls = \"implicit\"\n\
                    username = \"bounces\"\npassword_env = \"P\"\n";
        let c = Config::from_toml(base).unwrap();
        let imap = c.imap.unwrap();
        assert_eq!(imap.folder, "INBOX");
        assert!(imap.idle && imap.delete_processed && !imap.keep_other);
        assert_eq!(imap.processed_folder, None);
        assert_eq!(imap.poll_interval, Duration::from_secs(300));
        assert_eq!(imap.max_fetch_failures, 3);
        assert!(Config::from_toml(&format!("{base}folderr = \"x\"\n")).is_err());
        let c = Config::from_toml(&base.replace("implicit", "none")).unwrap();
        assert!(matches!(
            c.validate(),
            Err(Error::PlaintextHost {
                section: "imap",
                ..
            })
        ));
    }

    #[test]
    fn config_rejects_unknown_keys() {
        assert!(Config::from_toml("[store]\nurl = \"sqlite::memory:\"\nurll = 1\n").is_err());
    }

    #[test]
    fn config_parses_the_design_sketch() {
        let c = Config::from_toml(
            r#"
            [pop3]
            host = "pop.example.org"
            port = 995
            tls = "implicit"
            username = "bounces"
            password_env = "REBOUND_POP3_PASSWORD"
            poll_interval = "5m"
            max_message_size = "25MB"
            [smtp]
            host = "smtp.example.org"
            port = 587
            tls = "starttls"
            from = "News <news@example.org>"
            bounce_domain = "bounces.example.org"
            [[smtp.rate_limit]]
            messages = 14
            per = "1s"
            [[smtp.rate_limit]]
            messages = 50000
            per = "24h"
            [[policy]]
            name = "invalid-recipient"
            path = "policies/invalid_recipient.wasm"
            [policy_limits]
            memory = "64MB"
            time = "50ms"
            [rules]
            soft_bounces_to_bounce = 3
            soft_bounce_window = "30d"
            complaint = "unsubscribe"
            "#,
        )
        .unwrap();
        let pop3 = c.pop3.unwrap();
        assert_eq!(pop3.poll_interval, Duration::from_secs(300));
        assert_eq!(pop3.max_message_size, 25_000_000);
        assert_eq!(pop3.max_fetch_failures, 3);
        let smtp = c.smtp.unwrap();
        assert!(
            matches!(&smtp.rate_limit[1], RateLimitConfig::Table(t) if t.per == Duration::from_secs(86_400))
        );
        assert_eq!(c.policy_limits.time, Duration::from_millis(50));
        assert_eq!(c.rules.soft_bounce_window, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn rate_limits_take_the_string_form_too() {
        let c = Config::from_toml(
            "[smtp]\nhost=\"h\"\nport=1\ntls=\"none\"\nfrom=\"a@b.c\"\nbounce_domain=\"b.c\"\n\
             rate_limit = [\"14/s\", \"100/min,max_burst=10\", { messages = 5, per = \"1h\" }]\n",
        )
        .unwrap();
        let limits = c.smtp.unwrap().rate_limit;
        assert!(matches!(&limits[0], RateLimitConfig::Spec(s) if s == "14/s"));
        assert!(matches!(&limits[2], RateLimitConfig::Table(t) if t.messages == 5));
    }

    #[test]
    fn pause_on_sender_blocks_is_off_by_default_and_parses() {
        assert_eq!(Config::default().rules.pause_on_sender_blocks, None);
        let c = Config::from_toml(
            "[rules]\npause_on_sender_blocks = { threshold = \"20%\", min_sends = 50, window = \"1h\" }\n",
        )
        .unwrap();
        assert_eq!(
            c.rules.pause_on_sender_blocks,
            Some(PauseRule {
                threshold: 0.2,
                min_sends: 50,
                window: Duration::from_secs(3600)
            })
        );
        let c = Config::from_toml("[rules.pause_on_sender_blocks]\nthreshold = 0.35\n").unwrap();
        let rule = c.rules.pause_on_sender_blocks.unwrap();
        assert_eq!((rule.threshold, rule.min_sends), (0.35, 50));
        assert!(
            Config::from_toml("[rules]\npause_on_sender_blocks = { threshold = \"120%\" }\n")
                .is_err()
        );
        assert!(
            Config::from_toml("[rules]\npause_on_sender_blocks = { treshold = 0.2 }\n").is_err()
        );
    }

    #[test]
    fn public_url_is_an_http_base() {
        for (url, host) in [
            ("https://rebound.example.com", Some("rebound.example.com")),
            (
                "https://rebound.example.com:8443/mail/",
                Some("rebound.example.com:8443"),
            ),
            ("http://[2001:db8::1]:8025", Some("[2001:db8::1]:8025")),
            ("rebound.example.com", None),
            ("https://", None),
            ("https://a.example/u?x=1", None),
            ("https://user@a.example", None),
            ("ftp://a.example", None),
        ] {
            assert_eq!(public_url_host(url), host, "{url}");
        }
        let c = Config::from_toml("[api]\npublic_url = \"example.com\"\n").unwrap();
        assert!(matches!(c.validate(), Err(Error::PublicUrl(_))));
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let c = Config::from_toml(
            "[pop3]\nhost=\"h\"\nport=1\ntls=\"none\"\nusername=\"u\"\npassword_env=\"P\"\n",
        )
        .unwrap();
        let dbg = format!("{:?}", c.pop3.unwrap());
        assert!(dbg.contains("password_env"));
    }

    #[test]
    fn webhooks_sections_parse_with_defaults_and_refuse_unknown_keys() {
        let c = Config::from_toml(
            "[webhooks.mailgun]\nsigning_key_env = \"K\"\n\
             [webhooks.ses]\ntopic_arns = [\"arn:aws:sns:eu-west-1:1:t\"]\n",
        )
        .unwrap();
        assert_eq!(c.webhooks.max_body, 1024 * 1024);
        assert_eq!(c.webhooks.mailgun.unwrap().signing_key_env, "K");
        let ses = c.webhooks.ses.unwrap();
        assert_eq!(
            ses.cert_hosts,
            ["sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"]
        );
        assert!(c.webhooks.sendgrid.is_none() && c.webhooks.postmark.is_none());
        for bad in [
            "[webhooks.mailgun]\nsigning_key = \"inline secret\"\n",
            "[webhooks.postmark]\nusername = \"u\"\npassword = \"p\"\n",
            "[webhooks.mandrill]\nkey_env = \"K\"\n",
            "[webhooks]\nmax_bdy = \"1MB\"\n",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
    }
}

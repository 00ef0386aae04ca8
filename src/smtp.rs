//! The SMTP sender: the last outbound stage. A rendered message and its envelope come in
//! from the queue; out goes either [`Sent`] (the server took it) or an [`Error`] whose
//! predicates ([`Error::is_transient`], [`Error::is_permanent`], [`Error::is_throttling`],
//! [`Error::is_unconfirmed`], [`Error::code`]) are all the queue looks at.
//!
//! [`Mailer`] is rebound's own trait with one required method, [`Mailer::send_raw`].
//! [`SmtpMailer`] implements it on lettre's asynchronous SMTP connection (tokio + rustls):
//! implicit TLS, STARTTLS or plain (a loopback host only), AUTH, and a pool of connections that
//! are reused without a NOOP between messages. It drives MAIL, RCPT and DATA one command
//! at a time so that an error knows its [`Stage`], and a rejected recipient costs a RSET,
//! not a new connection. The answer to the final "." has its own, longer timeout; no
//! answer there once the "." went out is [`Error::is_unconfirmed`] (the server may have
//! the message). An internationalised domain goes out as its A-label ([`wire_address`]);
//! what the relay cannot take (no SMTPUTF8, no 8BITMIME) is refused before MAIL, as a
//! failure of that recipient alone. [`StubMailer`] records messages and fails on demand,
//! for unit tests.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{SmtpConfig, TlsMode};

/// The envelope of one message: the reverse path (the VERP address) and one recipient.
///
/// Campaign mail goes to one recipient per message, so every message has its own
/// envelope sender and a rejection always names exactly one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `MAIL FROM`; empty for the null reverse path `<>`.
    pub from: String,
    /// `RCPT TO`.
    pub to: String,
}

impl Envelope {
    /// An envelope from `from` to `to`.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Envelope {
        Envelope {
            from: from.into(),
            to: to.into(),
        }
    }
}

/// The server accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The reply code to the end of DATA (250).
    pub code: u16,
    /// The reply text (often carries the server's queue id).
    pub text: String,
}

/// Where in the SMTP dialogue something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// TCP connect, TLS handshake, greeting, EHLO, STARTTLS or AUTH.
    Connect,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// The `DATA` command.
    Data,
    /// The reply after the message body.
    Message,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Message => "end of DATA",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The server answered with a 4xx or 5xx reply.
    Reply(u16),
    /// Connecting, reading or writing failed, or the server sent garbage.
    Network,
    /// A command or the connection timed out.
    Timeout,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The message or envelope cannot be sent at all (bad address, bad config).
    Invalid,
    /// The final "." of DATA went out but no answer came (a timeout, or the connection
    /// was lost): the server may have taken the message.
    Unconfirmed,
}

/// A failed send. Act on the predicates, never on the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    stage: Stage,
    text: String,
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error for a server reply `code` (4xx or 5xx) with its text, at `stage`.
    pub fn reply(stage: Stage, code: u16, text: impl Into<String>) -> Error {
        Error {
            kind: Kind::Reply(code),
            stage,
            text: text.into(),
        }
    }

    /// A network failure (connection refused, reset, closed) at `stage`.
    pub fn network(stage: Stage, text: impl Into<String>) -> Error {
        Error {
            kind: Kind::Network,
            stage,
            text: text.into(),
        }
    }

    /// A message or envelope that cannot be sent (e.g. an invalid address).
    pub fn invalid(text: impl Into<String>) -> Error {
        Error {
            kind: Kind::Invalid,
            stage: Stage::Mail,
            text: text.into(),
        }
    }

    /// The message went out whole, final "." included, but no answer came (see
    /// [`Error::is_unconfirmed`]); `text` says what happened instead.
    pub fn unconfirmed(text: impl Into<String>) -> Error {
        Error {
            kind: Kind::Unconfirmed,
            stage: Stage::Message,
            text: text.into(),
        }
    }

    fn timeout(stage: Stage) -> Error {
        Error {
            kind: Kind::Timeout,
            stage,
            text: "timed out".into(),
        }
    }

    fn from_lettre(stage: Stage, err: lettre::transport::smtp::Error) -> Error {
        let text = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_else(|| err.to_string());
        let kind = if let Some(code) = err.status() {
            Kind::Reply(u16::from(code))
        } else if err.is_timeout() {
            Kind::Timeout
        } else if err.is_tls() || is_tls_failure(&err) {
            Kind::Tls
        } else if err.is_client() {
            Kind::Invalid
        } else {
            Kind::Network
        };
        Error { kind, stage, text }
    }

    /// The SMTP reply code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self.kind {
            Kind::Reply(code) => Some(code),
            _ => None,
        }
    }

    /// Where in the dialogue it failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The server's reply text, or a description of the failure.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The RFC 3463 enhanced status code at the start of the reply text (`5.1.1`), if any.
    pub fn enhanced_status(&self) -> Option<&str> {
        self.code()?;
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }

    /// Worth trying again later: a 4xx reply, a timeout or a network failure (but not
    /// one after the final "." of DATA: [`Error::is_unconfirmed`]).
    pub fn is_transient(&self) -> bool {
        match self.kind {
            Kind::Reply(code) => (400..500).contains(&code),
            Kind::Network | Kind::Timeout => true,
            Kind::Tls | Kind::Invalid | Kind::Unconfirmed => false,
        }
    }

    /// The whole message went out, final "." included, but no answer came (the end-of-DATA
    /// timeout ran out, or the connection was lost): the server may have accepted it
    /// (RFC 5321 §6.1: this is how duplicates are made), so it must not be sent again
    /// blindly. Not transient, not throttling, not the recipient's fault.
    pub fn is_unconfirmed(&self) -> bool {
        self.kind == Kind::Unconfirmed
    }

    /// A 5xx reply: the server refused for good.
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, Kind::Reply(code) if (500..600).contains(&code))
    }

    /// The server or the connection is the problem, not the recipient: the sender should
    /// slow down and retry the same message later without counting it against the
    /// recipient. True for 421 and 454, for any 4xx before RCPT, for a 4xx whose text
    /// speaks of rates or limits, for a 4xx about our sender address (`4.1.7`, `4.1.8`:
    /// "Sender address rejected: Domain not found"), and for network failures and
    /// timeouts before the end of DATA.
    pub fn is_throttling(&self) -> bool {
        match self.kind {
            Kind::Reply(421 | 454) => true,
            Kind::Reply(code) if (400..500).contains(&code) => {
                matches!(self.stage, Stage::Connect | Stage::Mail)
                    || mentions_rate(&self.text)
                    || matches!(self.enhanced_status(), Some("4.1.7" | "4.1.8"))
            }
            Kind::Network | Kind::Timeout => true,
            _ => false,
        }
    }

    /// The answer is about the recipient (a 4xx or 5xx at RCPT or later that is not throttling).
    pub fn is_recipient_failure(&self) -> bool {
        self.code().is_some()
            && matches!(self.stage, Stage::Rcpt | Stage::Data | Stage::Message)
            && !self.is_throttling()
    }

    /// The configuration or the message is wrong (TLS failure, invalid address): retrying
    /// will not help and it is not the recipient's fault either.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, Kind::Tls)
            || (self.kind == Kind::Invalid && self.stage != Stage::Rcpt)
            || (self.is_permanent() && matches!(self.stage, Stage::Connect | Stage::Mail))
    }

    /// The reply as one line: `550 5.1.1 no such user`.
    pub fn diagnostic(&self) -> String {
        match self.code() {
            Some(code) => format!("{code} {}", self.text),
            None if self.is_unconfirmed() => format!(
                "no answer to the end of DATA ({}): may have been delivered",
                self.text
            ),
            None => self.text.clone(),
        }
    }
}

fn mentions_rate(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "rate limit",
        "rate-limit",
        "ratelimit",
        "sending rate",
        "throttl",
        "too many",
        "slow down",
        "limit exceeded",
    ]
    .iter()
    .any(|w| t.contains(w))
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "smtp::Error({:?} at {}: {:?})",
            self.kind, self.stage, self.text
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Reply(code) => write!(f, "smtp {} answered {code} {}", self.stage, self.text),
            Kind::Network => write!(f, "smtp network error at {}: {}", self.stage, self.text),
            Kind::Timeout => write!(f, "smtp timeout at {}", self.stage),
            Kind::Tls => write!(f, "smtp TLS error: {}", self.text),
            Kind::Invalid => write!(f, "smtp: cannot send: {}", self.text),
            Kind::Unconfirmed => write!(
                f,
                "smtp: no answer to the end of DATA ({}): the message may have been delivered",
                self.text
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Something that delivers raw messages: rebound's sender interface.
pub trait Mailer: Send + Sync {
    /// Sends `bytes` (a complete RFC 5322 message, CRLF line endings) under `envelope`.
    ///
    /// # Errors
    /// An [`Error`] saying at which [`Stage`] and how it failed.
    fn send_raw(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> impl Future<Output = Result<Sent>> + Send;

    /// Like [`Mailer::send_raw`], but the transaction starts only once `gate` (the rate
    /// limiter) lets it: a mailer that must first connect does so *before* waiting, so
    /// the time a limit counts is the time the transaction starts. The default waits for
    /// the gate, then sends.
    ///
    /// # Errors
    /// As [`Mailer::send_raw`].
    fn send_gated<G>(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
        gate: G,
    ) -> impl Future<Output = Result<Sent>> + Send
    where
        G: Future<Output = ()> + Send,
    {
        async move {
            gate.await;
            self.send_raw(envelope, bytes).await
        }
    }

    /// Closes idle connections politely (QUIT). The default does nothing.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl<M: Mailer> Mailer for Arc<M> {
    fn send_raw(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> impl Future<Output = Result<Sent>> + Send {
        (**self).send_raw(envelope, bytes)
    }
    fn send_gated<G>(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
        gate: G,
    ) -> impl Future<Output = Result<Sent>> + Send
    where
        G: Future<Output = ()> + Send,
    {
        (**self).send_gated(envelope, bytes, gate)
    }
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        (**self).shutdown()
    }
}

/// Builds an [`SmtpMailer`].
#[derive(Clone)]
pub struct SmtpMailerBuilder {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, String)>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
    data_timeout: Duration,
    max_connections: usize,
    hello_name: Option<String>,
}

impl SmtpMailerBuilder {
    /// A builder for `host:port`. Defaults: STARTTLS, no AUTH, the platform's verifier,
    /// 30 s per command, 10 min for the answer to the end of DATA, 4 connections, the host
    /// name from the system as EHLO name.
    pub fn new(host: impl Into<String>, port: u16) -> SmtpMailerBuilder {
        SmtpMailerBuilder {
            host: host.into(),
            port,
            tls: TlsMode::Starttls,
            credentials: None,
            ca_pem: None,
            timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(600),
            max_connections: 4,
            hello_name: None,
        }
    }

    /// How the connection is secured.
    pub fn tls(mut self, tls: TlsMode) -> Self {
        self.tls = tls;
        self
    }

    /// AUTH (PLAIN or LOGIN) with these credentials.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// Trust this PEM root (a private CA) besides the system's roots.
    pub fn ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// Timeout of one command (and of connecting).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for the answer to the final "." of DATA (RFC 5321 §4.5.3.2.6: 10
    /// minutes; the server may scan the message before it answers). A timeout there is
    /// [`Error::is_unconfirmed`], not a failure to retry.
    pub fn data_timeout(mut self, timeout: Duration) -> Self {
        self.data_timeout = timeout;
        self
    }

    /// At most this many connections at once (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The EHLO name.
    pub fn hello_name(mut self, name: impl Into<String>) -> Self {
        self.hello_name = Some(name.into());
        self
    }

    /// Builds the mailer; connections are opened on first use.
    ///
    /// # Errors
    /// [`Error`] (fatal) when the CA file is not valid PEM, TLS parameters cannot be built,
    /// or TLS is off ([`TlsMode::None`]) for a host that is not a loopback one.
    pub fn build(self) -> Result<SmtpMailer> {
        crate::config::check_plaintext("smtp", &self.host, self.tls).map_err(|e| Error {
            kind: Kind::Tls,
            stage: Stage::Connect,
            text: e.to_string(),
        })?;
        let tls = match self.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::Starttls => {
                // The platform's verifier plus the extra root, as for POP3 (see TlsMode).
                let mut b = TlsParameters::builder(self.host.clone())
                    .certificate_store(CertificateStore::Default);
                if let Some(pem) = &self.ca_pem {
                    let cert = Certificate::from_pem(pem).map_err(|e| Error {
                        kind: Kind::Tls,
                        stage: Stage::Connect,
                        text: e.to_string(),
                    })?;
                    b = b.add_root_certificate(cert);
                }
                Some(b.build_rustls().map_err(|e| Error {
                    kind: Kind::Tls,
                    stage: Stage::Connect,
                    text: e.to_string(),
                })?)
            }
        };
        // Implicit TLS is set up here, under the flush-counting socket (see Watched), with
        // the same verifier as POP3.
        let implicit = match self.tls {
            TlsMode::Implicit => {
                let extra = match &self.ca_pem {
                    Some(pem) => crate::pop3::tls::pem_roots(pem)
                        .map_err(|e| tls_error(format!("the CA file: {e}")))?,
                    None => Vec::new(),
                };
                Some(Arc::new(
                    crate::pop3::tls::platform_config(extra).map_err(tls_error)?,
                ))
            }
            _ => None,
        };
        let hello = match self.hello_name {
            Some(name) => ClientId::Domain(name),
            None => ClientId::default(),
        };
        Ok(SmtpMailer {
            inner: Arc::new(Inner {
                host: self.host,
                port: self.port,
                mode: self.tls,
                tls,
                implicit,
                credentials: self.credentials.map(|(u, p)| Credentials::new(u, p)),
                timeout: self.timeout,
                data_timeout: self.data_timeout,
                hello,
                idle: Mutex::new(Vec::new()),
                slots: tokio::sync::Semaphore::new(self.max_connections),
            }),
        })
    }
}

/// The lettre-backed [`Mailer`]: a pool of SMTP connections to one relay.
#[derive(Clone)]
pub struct SmtpMailer {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    mode: TlsMode,
    /// For STARTTLS.
    tls: Option<TlsParameters>,
    /// For implicit TLS.
    implicit: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<Credentials>,
    timeout: Duration,
    data_timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<Conn>>,
    slots: tokio::sync::Semaphore,
}

/// One pooled connection and the count of completed flushes on its socket.
struct Conn {
    smtp: AsyncSmtpConnection,
    flushes: Arc<AtomicU64>,
}

/// The socket under a connection (plain, or under lettre's STARTTLS), counting completed
/// flushes: lettre ends every write with a flush, and flushes TLS records all the way
/// down to here, so a flush counted after the DATA payload was handed over means the
/// final "." left this process. An error before that means the server cannot have the
/// whole message; an error after it means it may.
#[derive(Debug)]
struct Watched<S> {
    io: S,
    peer: SocketAddr,
    flushes: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.flushes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S> AsyncTokioStream for Watched<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + fmt::Debug,
{
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("tls", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the `[smtp]` section: password from `password_env`, trust root from
    /// `ca_file`, one connection per worker.
    ///
    /// # Errors
    /// [`Error`] (fatal) when the password variable is unset or the CA file unreadable.
    pub fn from_config(config: &SmtpConfig) -> Result<SmtpMailer> {
        let mut b = SmtpMailerBuilder::new(config.host.clone(), config.port)
            .tls(config.tls)
            .timeout(config.timeout)
            .data_timeout(config.data_timeout)
            .max_connections(config.workers);
        if let Some(name) = &config.hello_name {
            b = b.hello_name(name.clone());
        }
        if let Some(user) = &config.username {
            let password = match &config.password_env {
                Some(var) => crate::config::secret_from_env(var)
                    .map_err(|e| Error::invalid(e.to_string()))?,
                None => String::new(),
            };
            b = b.credentials(user.clone(), password);
        }
        if let Some(path) = &config.ca_file {
            b = b.ca_pem(read_file(path)?);
        }
        b.build()
    }

    async fn connect(&self) -> Result<Conn> {
        let i = &*self.inner;
        let tcp =
            match tokio::time::timeout(i.timeout, TcpStream::connect((i.host.as_str(), i.port)))
                .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    return Err(Error::network(
                        Stage::Connect,
                        format!("connecting to {}:{}: {e}", i.host, i.port),
                    ));
                }
                Err(_) => return Err(Error::timeout(Stage::Connect)),
            };
        let _ = tcp.set_nodelay(true);
        let peer = tcp
            .peer_addr()
            .map_err(|e| Error::network(Stage::Connect, e.to_string()))?;
        let flushes = Arc::new(AtomicU64::new(0));
        let stream: Box<dyn AsyncTokioStream> = match &i.implicit {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(i.host.clone())
                    .map_err(|e| tls_error(format!("server name {:?}: {e}", i.host)))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = match tokio::time::timeout(i.timeout, connector.connect(name, tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) if is_tls_failure(&e) => return Err(tls_error(e.to_string())),
                    Ok(Err(e)) => return Err(Error::network(Stage::Connect, e.to_string())),
                    Err(_) => return Err(Error::timeout(Stage::Connect)),
                };
                Box::new(Watched {
                    io: tls,
                    peer,
                    flushes: flushes.clone(),
                })
            }
            None => Box::new(Watched {
                io: tcp,
                peer,
                flushes: flushes.clone(),
            }),
        };
        let connecting = AsyncSmtpConnection::connect_with_transport(stream, &i.hello);
        let mut conn = timed(i.timeout, Stage::Connect, connecting).await?;
        if i.mode == TlsMode::Starttls {
            let Some(tls) = i.tls.clone() else {
                return Err(Error::invalid("STARTTLS without TLS parameters"));
            };
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(tls_error("server does not offer STARTTLS"));
            }
            timed(i.timeout, Stage::Connect, conn.starttls(tls, &i.hello)).await?;
        }
        if let Some(creds) = &i.credentials {
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if let Err(e) = timed(i.timeout, Stage::Connect, conn.auth(&mechanisms, creds)).await {
                conn.abort().await;
                return Err(e);
            }
        }
        Ok(Conn {
            smtp: conn,
            flushes,
        })
    }

    /// The envelope in wire form and the MAIL parameters it needs, before anything is
    /// sent. What this relay cannot take is an error about this recipient alone (stage
    /// RCPT, no reply): a non-ASCII local part without SMTPUTF8, an 8-bit message
    /// without 8BITMIME, an address that does not parse.
    fn prepare(
        &self,
        conn: &AsyncSmtpConnection,
        env: &Envelope,
        bytes: &[u8],
    ) -> Result<(Option<Address>, Address, Vec<MailParameter>)> {
        let from = if env.from.is_empty() {
            None
        } else {
            Some(
                Address::from_str(&env.from)
                    .map_err(|e| Error::invalid(format!("sender {:?}: {e}", env.from)))?,
            )
        };
        let unsendable = |text: String| Error {
            kind: Kind::Invalid,
            stage: Stage::Rcpt,
            text,
        };
        let wire = wire_address(&env.to).map_err(|e| unsendable(e.to_string()))?;
        let to = Address::from_str(&wire)
            .map_err(|e| unsendable(format!("recipient {:?}: {e}", env.to)))?;
        let info = conn.server_info();
        let mut params = Vec::new();
        if !env.from.is_ascii() {
            // The VERP sender is ASCII; a non-ASCII one is a configuration problem.
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Error::invalid(format!(
                    "sender {:?} is not ASCII and the relay does not offer SMTPUTF8",
                    env.from
                )));
            }
        }
        if !wire.is_ascii() && !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(unsendable(format!(
                "recipient {:?} has a non-ASCII local part and the relay does not offer SMTPUTF8",
                env.to
            )));
        }
        if !bytes.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return Err(unsendable(format!(
                    "the message to {:?} is 8-bit and the relay does not offer 8BITMIME",
                    env.to
                )));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if !env.from.is_ascii() || !wire.is_ascii() {
            params.push(MailParameter::SmtpUtfEight);
        }
        Ok((from, to, params))
    }

    async fn transaction(
        &self,
        conn: &mut Conn,
        envelope: (Option<Address>, Address, Vec<MailParameter>),
        bytes: &[u8],
    ) -> Result<Sent> {
        let t = self.inner.timeout;
        let (from, to, params) = envelope;
        let c = &mut conn.smtp;
        timed(t, Stage::Mail, c.command(Mail::new(from, params))).await?;
        timed(t, Stage::Rcpt, c.command(Rcpt::new(to, Vec::new()))).await?;
        timed(t, Stage::Data, c.command(Data)).await?;
        // The body and the final dot go out in one write (one flush); lettre's message()
        // writes them separately (two).
        let dt = self.inner.data_timeout;
        let before = conn.flushes.load(Ordering::SeqCst);
        let (writes, reply) = match std::str::from_utf8(bytes) {
            Ok(text) => (
                1,
                timed(dt, Stage::Message, c.command(DataBody(text))).await,
            ),
            Err(_) => (2, timed(dt, Stage::Message, c.message(bytes)).await),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e)
                if matches!(e.kind, Kind::Timeout | Kind::Network)
                    && conn.flushes.load(Ordering::SeqCst) >= before + writes =>
            {
                let text = if e.kind == Kind::Timeout {
                    format!("no answer within {}", humantime::format_duration(dt))
                } else {
                    e.text
                };
                return Err(Error::unconfirmed(text));
            }
            Err(e) => return Err(e),
        };
        Ok(Sent {
            code: u16::from(reply.code()),
            text: reply.message().collect::<Vec<_>>().join(" "),
        })
    }
}

fn tls_error(text: impl Into<String>) -> Error {
    Error {
        kind: Kind::Tls,
        stage: Stage::Connect,
        text: text.into(),
    }
}

/// An address as it goes on the wire: an internationalised domain as its A-label
/// (punycode, `bücher.example` → `xn--bcher-kva.example`), so that only a non-ASCII local
/// part needs SMTPUTF8. An ASCII address is returned as it is.
///
/// # Errors
/// [`Error`] (about the recipient) when the domain is not a valid IDN.
pub fn wire_address(address: &str) -> Result<String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(address.to_owned());
    };
    if domain.is_ascii() {
        return Ok(address.to_owned());
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|e| Error {
        kind: Kind::Invalid,
        stage: Stage::Rcpt,
        text: format!("recipient {address:?}: domain {domain:?} is not a valid IDN: {e}"),
    })?;
    Ok(format!("{local}@{ascii}"))
}

/// A message body as one SMTP DATA payload: dot-stuffed, CRLF-terminated, with the
/// final `.` line.
struct DataBody<'a>(&'a str);

impl fmt::Display for DataBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while !rest.is_empty() {
            let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            let (line, tail) = rest.split_at(end);
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
            rest = tail;
        }
        if !self.0.is_empty() && !self.0.ends_with("\r\n") {
            f.write_str("\r\n")?;
        }
        f.write_str(".\r\n")
    }
}

/// Is a rustls error (a handshake or certificate failure) somewhere in the chain? lettre
/// reports a failed handshake as a connection error; it is a configuration problem, not
/// something to retry.
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        next = e.source();
    }
    false
}

async fn timed<T>(
    limit: Duration,
    stage: Stage,
    fut: impl Future<Output = std::result::Result<T, lettre::transport::smtp::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| Error::from_lettre(stage, e)),
        Err(_) => Err(Error::timeout(stage)),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("reading {}: {e}", path.display())))
}

impl Mailer for SmtpMailer {
    async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Sent> {
        self.send_gated(envelope, bytes, async {}).await
    }

    #[tracing::instrument(name = "rebound.smtp.send", skip_all)]
    async fn send_gated<G>(&self, envelope: &Envelope, bytes: &[u8], gate: G) -> Result<Sent>
    where
        G: Future<Output = ()> + Send,
    {
        let mut gate = Some(gate);
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|_| Error::network(Stage::Connect, "mailer shut down"))?;
        // A connection may have been closed by the server while it sat idle in the pool
        // or waited at the gate (a slow limit); a network error before anything was
        // accepted is retried once on a fresh connection.
        let mut reused = self.inner.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut retried = false;
        loop {
            let mut conn = match reused.take() {
                Some(c) => c,
                None => self.connect().await?,
            };
            // Nothing is sent (nor the limit spent) for what this relay cannot take.
            let wire = match self.prepare(&conn.smtp, envelope, bytes) {
                Ok(w) => w,
                Err(e) => {
                    self.park(conn);
                    return Err(e);
                }
            };
            if let Some(g) = gate.take() {
                g.await;
            }
            let result = self.transaction(&mut conn, wire, bytes).await;
            match &result {
                Err(e) if !retried && e.code().is_none() && e.stage() == Stage::Mail => {
                    conn.smtp.abort().await;
                    retried = true;
                    continue;
                }
                Ok(_) => self.park(conn),
                Err(e) => self.recover(conn, e).await,
            }
            return result;
        }
    }

    async fn shutdown(&self) {
        let conns = self
            .inner
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for mut c in conns {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.smtp.quit()).await;
        }
    }
}

impl SmtpMailer {
    fn park(&self, conn: Conn) {
        if conn.smtp.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.push(conn);
        }
    }

    /// After a failed transaction: keep the connection when the server only refused this
    /// message (RSET and reuse), drop it otherwise.
    async fn recover(&self, mut conn: Conn, e: &Error) {
        let keep = match e.code() {
            Some(421) | None => false,
            Some(_) => {
                e.stage() == Stage::Message
                    || matches!(
                        tokio::time::timeout(self.inner.timeout, conn.smtp.command(Rset)).await,
                        Ok(Ok(_))
                    )
            }
        };
        if keep {
            self.park(conn);
        } else {
            conn.smtp.abort().await;
        }
    }
}

/// What a [`StubMailer`] answers.
#[derive(Debug, Clone)]
pub enum StubReply {
    /// Accept.
    Ok,
    /// Fail with this error.
    Fail(Error),
}

/// A [`Mailer`] for unit tests: records every message and answers from a script.
///
/// By default it accepts everything. [`StubMailer::reject`] makes one recipient fail
/// always; [`StubMailer::script`] queues one-off answers for a recipient, consumed in order.
#[derive(Debug, Clone, Default)]
pub struct StubMailer {
    state: Arc<Mutex<StubState>>,
}

#[derive(Debug, Default)]
struct StubState {
    sent: Vec<(Envelope, Vec<u8>)>,
    always: Vec<(String, Error)>,
    scripted: Vec<(String, Error)>,
    attempts: usize,
}

impl StubMailer {
    /// A stub that accepts every message.
    pub fn new_ok() -> StubMailer {
        StubMailer::default()
    }

    /// Every message to `recipient` fails with `error`.
    pub fn reject(&self, recipient: &str, error: Error) {
        if let Ok(mut s) = self.state.lock() {
            s.always.push((recipient.to_ascii_lowercase(), error));
        }
    }

    /// The next message to `recipient` fails with `error` (one-off; several calls queue up).
    pub fn script(&self, recipient: &str, error: Error) {
        if let Ok(mut s) = self.state.lock() {
            s.scripted.push((recipient.to_ascii_lowercase(), error));
        }
    }

    /// The accepted messages, in order.
    pub fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.state
            .lock()
            .map(|s| s.sent.clone())
            .unwrap_or_default()
    }

    /// How many sends were attempted (accepted or not).
    pub fn attempts(&self) -> usize {
        self.state.lock().map(|s| s.attempts).unwrap_or(0)
    }
}

impl Mailer for StubMailer {
    async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Sent> {
        let Ok(mut s) = self.state.lock() else {
            return Err(Error::network(Stage::Connect, "stub poisoned"));
        };
        s.attempts += 1;
        let to = envelope.to.to_ascii_lowercase();
        if let Some(pos) = s.scripted.iter().position(|(r, _)| *r == to) {
            return Err(s.scripted.remove(pos).1);
        }
        if let Some((_, e)) = s.always.iter().find(|(r, _)| *r == to) {
            return Err(e.clone());
        }
        s.sent.push((envelope.clone(), bytes.to_vec()));
        Ok(Sent {
            code: 250,
            text: "2.0.0 Ok: queued".into(),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn error_reads_enhanced_status() {
        let e = Error::reply(Stage::Rcpt, 550, "5.1.1 <a@example.com>: no such user");
        assert_eq!(e.enhanced_status(), Some("5.1.1"));
        assert!(e.is_permanent() && !e.is_transient());
        assert!(e.is_recipient_failure());
        assert_eq!(
            Error::reply(Stage::Rcpt, 550, "no such user").enhanced_status(),
            None
        );
    }

    #[test]
    fn error_tells_throttling_from_deferral() {
        assert!(Error::reply(Stage::Mail, 421, "4.7.0 slow down").is_throttling());
        assert!(Error::reply(Stage::Rcpt, 454, "4.7.0 Throttling failure").is_throttling());
        assert!(Error::reply(Stage::Rcpt, 451, "4.7.1 rate limit exceeded").is_throttling());
        assert!(Error::reply(Stage::Mail, 451, "4.3.0 busy").is_throttling());
        let deferral = Error::reply(Stage::Rcpt, 451, "4.2.0 mailbox busy");
        assert!(
            !deferral.is_throttling() && deferral.is_transient() && deferral.is_recipient_failure()
        );
        assert!(Error::network(Stage::Connect, "refused").is_throttling());
    }

    #[test]
    fn sender_address_4xx_is_throttling_and_unconfirmed_is_nothing_to_retry() {
        let e = Error::reply(
            Stage::Rcpt,
            450,
            "4.1.8 <b@x.example>: Sender address rejected: Domain not found",
        );
        assert!(e.is_throttling() && !e.is_recipient_failure());
        let u = Error::unconfirmed("no answer within 10m");
        assert!(u.is_unconfirmed());
        assert!(!u.is_transient() && !u.is_throttling() && !u.is_fatal());
        assert!(!u.is_recipient_failure() && !u.is_permanent());
        assert!(u.diagnostic().contains("may have been delivered"), "{u}");
    }

    #[test]
    fn wire_address_writes_an_idn_domain_as_its_a_label() {
        assert_eq!(
            wire_address("info@bücher.example").unwrap(),
            "info@xn--bcher-kva.example"
        );
        assert_eq!(
            wire_address("Jörg@Example.com").unwrap(),
            "Jörg@Example.com"
        );
        assert_eq!(wire_address("a@example.com").unwrap(), "a@example.com");
        let e = wire_address("a@b\u{fffd}c..example").unwrap_err();
        assert_eq!(e.stage(), Stage::Rcpt);
        assert!(!e.is_fatal(), "{e}");
    }

    #[test]
    fn plaintext_to_a_remote_host_is_refused_at_build() {
        let e = SmtpMailerBuilder::new("smtp.example.com", 25)
            .tls(TlsMode::None)
            .build()
            .unwrap_err();
        assert!(
            e.is_fatal() && e.text().contains("\"smtp.example.com\""),
            "{e}"
        );
        assert!(
            SmtpMailerBuilder::new("127.0.0.1", 25)
                .tls(TlsMode::None)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn data_body_is_dot_stuffed_and_terminated() {
        assert_eq!(
            DataBody("a\r\n.b\r\n..c\r\n").to_string(),
            "a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(DataBody(".x").to_string(), "..x\r\n.\r\n");
        assert_eq!(DataBody("").to_string(), ".\r\n");
    }

    #[tokio::test]
    async fn stub_records_and_fails_on_demand() {
        let stub = StubMailer::new_ok();
        stub.script(
            "b@example.com",
            Error::reply(Stage::Rcpt, 451, "4.2.0 later"),
        );
        let env = Envelope::new("bounces+x@example.org", "b@example.com");
        assert!(stub.send_raw(&env, b"x").await.is_err());
        assert!(stub.send_raw(&env, b"x").await.is_ok());
        assert_eq!(stub.messages().len(), 1);
        assert_eq!(stub.attempts(), 2);
    }
}

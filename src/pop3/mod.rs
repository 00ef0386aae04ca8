//! The POP3 source: this client (RFC 1939 with CAPA (RFC 2449) and STLS (RFC 2595) over
//! tokio and rustls), which fetches raw messages from the bounce mailbox, and the
//! [`poller`], which hands them to the [pipeline](crate::pipeline) and decides what to
//! delete.
//!
//! A focused client of our own, because the published crates fail the cases a bounce
//! mailbox meets (see the tests in `tests/pop3_*.rs`):
//!
//! * every read and write runs under [`Options::timeout`];
//! * a reply cut off by the server hanging up is [`Error::Closed`], never a retry loop;
//! * multi-line replies are dot-unstuffed (`..x` → `.x`) and end at the lone `.` line;
//! * [`Client::retr`] takes a size cap: a message that grows past it is
//!   [`Error::TooLarge`] (the connection is then unusable), so callers check
//!   [`Client::list`] sizes first and leave big messages on the server;
//! * a server's `-ERR` text is kept in [`Error::Server`] / [`Error::Auth`];
//! * the password is never written into an error or a log.
//!
//! Deletions (`DELE`) take effect only when the session ends with [`Client::quit`]; a
//! connection dropped without `QUIT` deletes nothing (RFC 1939 §6).

pub(crate) mod tls;

pub mod poller;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{Pop3Config, TlsMode};

/// Longest status line accepted (RFC 2449 allows 512 octets; servers are lenient).
const MAX_STATUS_LINE: u64 = 8 * 1024;
/// Longest line of a LIST/UIDL/CAPA listing.
const MAX_LISTING_LINE: u64 = 1024;
/// The most entries a listing's vector is made for up front (from STAT's count).
const MAX_LISTING_HINT: usize = 1 << 20;

/// Errors of the POP3 client. Each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error("pop3 connecting to {addr}: {cause}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The I/O error.
        cause: io::Error,
    },
    /// The server did not answer in time.
    #[error("pop3 {during}: no answer within {timeout:?}")]
    Timeout {
        /// The command or step.
        during: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// Reading or writing failed.
    #[error("pop3 {during}: {cause}")]
    Io {
        /// The command or step.
        during: String,
        /// The I/O error.
        cause: io::Error,
    },
    /// The server closed the connection (in the middle of a reply, or before it).
    #[error("pop3 {during}: the server closed the connection")]
    Closed {
        /// The command or step.
        during: String,
    },
    /// The server answered something that is not POP3.
    #[error("pop3 {during}: unexpected reply {line:?}")]
    Protocol {
        /// The command or step.
        during: String,
        /// The offending line (truncated).
        line: String,
    },
    /// The server answered `-ERR`.
    #[error("pop3 {command}: server said -ERR {message}")]
    Server {
        /// The command (never with a password).
        command: String,
        /// The server's text.
        message: String,
    },
    /// Login was refused (`-ERR` to USER or PASS).
    #[error("pop3 login as {user:?} refused: {message}")]
    Auth {
        /// The user name.
        user: String,
        /// The server's text.
        message: String,
    },
    /// STLS was asked for but the server does not offer it.
    #[error("pop3 server does not offer STLS (capabilities: {capabilities})")]
    NoStls {
        /// What CAPA listed.
        capabilities: String,
    },
    /// The TLS set-up failed (trust roots, server name, handshake).
    #[error("pop3 TLS {during}: {message}")]
    Tls {
        /// The step.
        during: String,
        /// What went wrong.
        message: String,
    },
    /// `tls = "none"` for a host that is not a loopback address: PASS would go in clear.
    #[error("pop3 tls = \"none\" is allowed only for a loopback host, not {host:?}")]
    Plaintext {
        /// The configured host.
        host: String,
    },
    /// A message is larger than the cap; nothing of it was handed on.
    #[error("pop3 message {msg} is larger than {limit} bytes")]
    TooLarge {
        /// The message number.
        msg: u32,
        /// The cap.
        limit: u64,
    },
    /// The connection is unusable after an earlier error.
    #[error("pop3 connection is unusable after an earlier error")]
    Broken,
}

impl Error {
    /// True when the server refused the login (wrong user or password): retrying soon
    /// will not help, but the poller still retries with backoff.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    /// True when the connection can no longer be used for commands.
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, Error::Server { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Implicit TLS, STLS, or none.
    pub tls: TlsMode,
    /// An extra trust root in PEM (besides the system's roots: see
    /// [`TlsMode`](crate::config::TlsMode)).
    pub ca_file: Option<PathBuf>,
    /// Timeout of the connect, the handshake, and every read and write.
    pub timeout: Duration,
}

impl Options {
    /// The options of a `[pop3]` config section.
    pub fn from_config(config: &Pop3Config) -> Options {
        Options {
            host: config.host.clone(),
            port: config.port,
            tls: config.tls,
            ca_file: config.ca_file.clone(),
            timeout: config.timeout,
        }
    }
}

/// The byte stream under a session: plain TCP or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Placeholder while the stream is being upgraded to TLS.
    Gone,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// One entry of a `LIST` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    /// Message number in this session (1-based).
    pub msg: u32,
    /// Size in octets, as the server counts it.
    pub size: u64,
}

/// One entry of a `UIDL` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidEntry {
    /// Message number in this session (1-based).
    pub msg: u32,
    /// The unique id, stable across sessions.
    pub uid: String,
}

/// A POP3 session, from greeting to `QUIT`.
pub struct Client {
    stream: BufReader<Conn>,
    timeout: Duration,
    greeting: String,
    capabilities: Vec<String>,
    broken: bool,
    /// Pipelined commands sent, whose replies are not read yet (oldest first).
    pending: std::collections::VecDeque<Pending>,
    /// Pipelined command lines not written yet.
    outgoing: Vec<u8>,
}

/// A pipelined command whose reply is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Retr(u32),
    Dele(u32),
}

/// The reply to a pipelined command, in the order the commands were sent.
#[derive(Debug)]
pub enum Reply {
    /// `RETR msg`: the message (as [`Client::retr`] returns it), or the server's `-ERR`
    /// ([`Error::Server`]; the session is still usable).
    Retr {
        /// The message number.
        msg: u32,
        /// The message or the server's refusal.
        result: Result<Vec<u8>>,
    },
    /// `DELE msg` succeeded.
    Dele {
        /// The message number.
        msg: u32,
    },
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, reads the greeting, asks CAPA and, for [`TlsMode::Starttls`], upgrades
    /// with STLS (and asks CAPA again). Not logged in yet: see [`Client::login`].
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Tls`], [`Error::NoStls`], [`Error::Timeout`],
    /// [`Error::Closed`], [`Error::Protocol`] (a greeting that is not `+OK`),
    /// [`Error::Plaintext`] (no TLS to a host that is not a loopback one).
    #[tracing::instrument(name = "rebound.pop3.connect", skip_all, fields(host = %opts.host, port = opts.port))]
    pub async fn connect(opts: &Options) -> Result<Client> {
        if crate::config::check_plaintext("pop3", &opts.host, opts.tls).is_err() {
            return Err(Error::Plaintext {
                host: opts.host.clone(),
            });
        }
        let addr = format!("{}:{}", opts.host, opts.port);
        let tcp = tokio::time::timeout(
            opts.timeout,
            TcpStream::connect((opts.host.as_str(), opts.port)),
        )
        .await
        .map_err(|_| Error::Timeout {
            during: format!("connecting to {addr}"),
            timeout: opts.timeout,
        })?
        .map_err(|cause| Error::Connect {
            addr: addr.clone(),
            cause,
        })?;
        let _ = tcp.set_nodelay(true);
        let conn = match opts.tls {
            TlsMode::Implicit => Conn::Tls(Box::new(tls::handshake(opts, tcp).await?)),
            TlsMode::Starttls | TlsMode::None => Conn::Plain(tcp),
        };
        let mut client = Client {
            stream: BufReader::with_capacity(64 * 1024, conn),
            timeout: opts.timeout,
            greeting: String::new(),
            capabilities: Vec::new(),
            broken: false,
            pending: std::collections::VecDeque::new(),
            outgoing: Vec::new(),
        };
        let greeting = client.read_status("greeting").await?;
        client.greeting = greeting;
        client.capabilities = client.optional_capa().await?;
        if opts.tls == TlsMode::Starttls {
            if !client.has_capability("STLS") {
                return Err(Error::NoStls {
                    capabilities: client.capabilities.join(", "),
                });
            }
            client.command("STLS", "STLS").await?;
            if !client.stream.buffer().is_empty() {
                // Bytes sent before the handshake could be injected plaintext.
                return Err(Error::Protocol {
                    during: "STLS".into(),
                    line: "data after +OK".into(),
                });
            }
            let Conn::Plain(tcp) = std::mem::replace(client.stream.get_mut(), Conn::Gone) else {
                return Err(Error::Broken);
            };
            let tls = tls::handshake(opts, tcp).await?;
            client.stream = BufReader::with_capacity(64 * 1024, Conn::Tls(Box::new(tls)));
            client.capabilities = client.optional_capa().await?;
        }
        Ok(client)
    }

    /// CAPA, where a server without it (`-ERR`) has no capabilities.
    async fn optional_capa(&mut self) -> Result<Vec<String>> {
        match self.capa().await {
            Ok(caps) => Ok(caps),
            Err(Error::Server { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The server's greeting text (after `+OK`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The capabilities from the last CAPA (upper-case tag first, e.g. `UIDL`, `STLS`).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Does the server list this capability (case-insensitive tag)?
    pub fn has_capability(&self, tag: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.split_whitespace()
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case(tag))
        })
    }

    /// Is the session encrypted?
    pub fn is_tls(&self) -> bool {
        matches!(self.stream.get_ref(), Conn::Tls(_))
    }

    /// `CAPA` (RFC 2449): the capability lines.
    ///
    /// # Errors
    /// [`Error::Server`] when the server has no CAPA, and the connection errors.
    pub async fn capa(&mut self) -> Result<Vec<String>> {
        self.command("CAPA", "CAPA").await?;
        let mut out = Vec::new();
        self.read_listing("CAPA", |line| {
            out.push(line.to_owned());
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `USER` + `PASS`. The password is never logged or put into an error.
    ///
    /// # Errors
    /// [`Error::Auth`] when the server refuses, and the connection errors.
    #[tracing::instrument(name = "rebound.pop3.login", skip_all, fields(user))]
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let auth = |e: Error| match e {
            Error::Server { message, .. } => Error::Auth {
                user: user.to_owned(),
                message,
            },
            e => e,
        };
        self.command(&format!("USER {user}"), "USER")
            .await
            .map_err(auth)?;
        self.command(&format!("PASS {password}"), "PASS")
            .await
            .map_err(auth)?;
        Ok(())
    }

    /// `AUTH MECHANISM <initial response>` (RFC 5034): a SASL login in one step, the
    /// response base64-encoded. A response too long for one command line (255 octets) is
    /// sent after the server's `+` instead. A server that refuses answers with a `+`
    /// carrying its error, which gets an empty line and then `-ERR`. The response (it
    /// holds a token) is never logged or put into an error.
    ///
    /// # Errors
    /// [`Error::Auth`] when the server refuses, and the connection errors.
    #[tracing::instrument(name = "rebound.pop3.auth", skip_all, fields(mechanism))]
    pub async fn authenticate(
        &mut self,
        user: &str,
        mechanism: &str,
        initial: &[u8],
    ) -> Result<()> {
        use base64::Engine as _;
        if self.broken {
            return Err(Error::Broken);
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(initial);
        let during = format!("AUTH {mechanism}");
        let inline = during.len() + 1 + encoded.len() <= 255;
        let first = if inline {
            format!("{during} {encoded}\r\n")
        } else {
            format!("{during}\r\n")
        };
        let mut pending = (!inline).then_some(encoded);
        let result = async {
            self.write_all(first.as_bytes(), &during).await?;
            loop {
                let mut line = Vec::new();
                self.read_line(&during, MAX_STATUS_LINE, &mut line).await?;
                let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
                if text.starts_with("+OK") {
                    return Ok(());
                } else if let Some(rest) = text.strip_prefix("-ERR") {
                    return Err(Error::Auth {
                        user: user.to_owned(),
                        message: rest.trim_start().to_owned(),
                    });
                } else if text == "+" || text.starts_with("+ ") {
                    // The response asked for, or (once it is sent) the server's error
                    // challenge, answered with an empty line.
                    let reply = pending.take().unwrap_or_default();
                    self.write_all(format!("{reply}\r\n").as_bytes(), &during)
                        .await?;
                } else {
                    return Err(Error::Protocol {
                        during: during.clone(),
                        line: clip(&text),
                    });
                }
            }
        }
        .await;
        if let Err(e) = &result
            && e.breaks_connection()
            && !e.is_auth()
        {
            self.broken = true;
        }
        result
    }

    /// `STAT`: (number of messages, total size).
    ///
    /// # Errors
    /// [`Error::Protocol`] for a malformed answer, and the connection errors.
    pub async fn stat(&mut self) -> Result<(u32, u64)> {
        let text = self.command("STAT", "STAT").await?;
        let mut it = text.split_whitespace();
        match (
            it.next().and_then(|n| n.parse().ok()),
            it.next().and_then(|s| s.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(Error::Protocol {
                during: "STAT".into(),
                line: text,
            }),
        }
    }

    /// `LIST`: every message with its size.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a malformed line, and the connection errors.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>> {
        self.list_sized(0).await
    }

    /// [`Client::list`] into a vector made for `count` entries (see [`Client::uidl_sized`]).
    ///
    /// # Errors
    /// As [`Client::list`].
    pub async fn list_sized(&mut self, count: usize) -> Result<Vec<ListEntry>> {
        self.command("LIST", "LIST").await?;
        let mut out = Vec::with_capacity(count.min(MAX_LISTING_HINT));
        self.read_listing("LIST", |line| {
            let mut it = line.split_whitespace();
            match (
                it.next().and_then(|n| n.parse().ok()),
                it.next().and_then(|s| s.parse().ok()),
            ) {
                (Some(msg), Some(size)) => {
                    out.push(ListEntry { msg, size });
                    Ok(())
                }
                _ => Err(Error::Protocol {
                    during: "LIST".into(),
                    line: clip(line),
                }),
            }
        })
        .await?;
        Ok(out)
    }

    /// `UIDL`: every message with its unique id.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a malformed line, and the connection errors.
    pub async fn uidl(&mut self) -> Result<Vec<UidEntry>> {
        self.uidl_sized(0).await
    }

    /// [`Client::uidl`] into a vector made for `count` entries (from STAT): a growing one
    /// holds up to twice the listing, and three times while it moves (megabytes at
    /// 100 000 messages). Capped at 2²⁰ entries, so a STAT that lies cannot make it reserve
    /// more than a listing of that size would take anyway.
    ///
    /// # Errors
    /// As [`Client::uidl`].
    pub async fn uidl_sized(&mut self, count: usize) -> Result<Vec<UidEntry>> {
        self.command("UIDL", "UIDL").await?;
        let mut out = Vec::with_capacity(count.min(MAX_LISTING_HINT));
        self.read_listing("UIDL", |line| {
            let mut it = line.split_whitespace();
            match (it.next().and_then(|n| n.parse().ok()), it.next()) {
                (Some(msg), Some(uid)) if it.next().is_none() => {
                    out.push(UidEntry {
                        msg,
                        uid: uid.to_owned(),
                    });
                    Ok(())
                }
                _ => Err(Error::Protocol {
                    during: "UIDL".into(),
                    line: clip(line),
                }),
            }
        })
        .await?;
        Ok(out)
    }

    /// `RETR msg`: the whole message, dot-unstuffed, with the line endings the server
    /// sent. At most `limit` bytes are accepted: a longer message is
    /// [`Error::TooLarge`] and the session cannot be used further.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::Server`] (no such message), [`Error::Closed`] when
    /// the server hangs up mid-message, and the other connection errors.
    pub async fn retr(&mut self, msg: u32, limit: u64) -> Result<Vec<u8>> {
        let during = format!("RETR {msg}");
        self.command(&during, &during).await?;
        let mut out = Vec::with_capacity(usize::try_from(limit.min(256 * 1024)).unwrap_or(0));
        let result = self.read_body(&during, msg, limit, &mut out).await;
        if result.is_err() {
            self.broken = true;
        }
        result.map(|()| out)
    }

    /// `DELE msg`: marks a message for deletion at [`Client::quit`].
    ///
    /// # Errors
    /// [`Error::Server`] (e.g. no such message), and the connection errors.
    pub async fn dele(&mut self, msg: u32) -> Result<()> {
        let during = format!("DELE {msg}");
        self.command(&during, &during).await.map(drop)
    }

    /// Does the server accept pipelined commands (CAPA `PIPELINING`, RFC 2449)?
    pub fn pipelining(&self) -> bool {
        self.has_capability("PIPELINING")
    }

    /// Pipelined commands whose replies are not read yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues `RETR msg` without waiting for its reply; read it with
    /// [`Client::read_reply`]. Only for a server that offers [`Client::pipelining`], or
    /// with one command in flight at a time.
    pub fn send_retr(&mut self, msg: u32) {
        self.outgoing
            .extend_from_slice(format!("RETR {msg}\r\n").as_bytes());
        self.pending.push_back(Pending::Retr(msg));
    }

    /// Queues `DELE msg` without waiting for its reply (see [`Client::send_retr`]).
    pub fn send_dele(&mut self, msg: u32) {
        self.outgoing
            .extend_from_slice(format!("DELE {msg}\r\n").as_bytes());
        self.pending.push_back(Pending::Dele(msg));
    }

    /// Sends what is queued and reads the reply to the oldest pipelined command. A
    /// message is capped at `limit` bytes as in [`Client::retr`].
    ///
    /// # Errors
    /// [`Error::Protocol`] when nothing is pending; a `-ERR` to DELE is
    /// [`Error::Server`]; [`Error::TooLarge`] and the connection errors leave the
    /// session unusable.
    pub async fn read_reply(&mut self, limit: u64) -> Result<Reply> {
        if self.broken {
            return Err(Error::Broken);
        }
        let Some(next) = self.pending.pop_front() else {
            return Err(Error::Protocol {
                during: "pipelining".into(),
                line: "no command pending".into(),
            });
        };
        let result = self.read_reply_inner(next, limit).await;
        if let Err(e) = &result
            && e.breaks_connection()
        {
            self.broken = true;
        }
        result
    }

    async fn read_reply_inner(&mut self, next: Pending, limit: u64) -> Result<Reply> {
        if !self.outgoing.is_empty() {
            let buf = std::mem::take(&mut self.outgoing);
            self.write_all(&buf, "pipelined commands").await?;
        }
        match next {
            Pending::Retr(msg) => {
                let during = format!("RETR {msg}");
                match self.read_status(&during).await {
                    Ok(_) => {}
                    Err(e @ Error::Server { .. }) => {
                        return Ok(Reply::Retr {
                            msg,
                            result: Err(e),
                        });
                    }
                    Err(e) => return Err(e),
                }
                let mut out =
                    Vec::with_capacity(usize::try_from(limit.min(256 * 1024)).unwrap_or(0));
                self.read_body(&during, msg, limit, &mut out).await?;
                Ok(Reply::Retr {
                    msg,
                    result: Ok(out),
                })
            }
            Pending::Dele(msg) => {
                self.read_status(&format!("DELE {msg}")).await?;
                Ok(Reply::Dele { msg })
            }
        }
    }

    /// `NOOP`.
    ///
    /// # Errors
    /// The connection errors.
    pub async fn noop(&mut self) -> Result<()> {
        self.command("NOOP", "NOOP").await.map(drop)
    }

    /// `RSET`: unmarks every message marked for deletion.
    ///
    /// # Errors
    /// The connection errors.
    pub async fn rset(&mut self) -> Result<()> {
        self.command("RSET", "RSET").await.map(drop)
    }

    /// `QUIT`: ends the session; the server now removes the messages marked with DELE.
    ///
    /// # Errors
    /// [`Error::Server`] when the server could not remove them, and the connection errors.
    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT", "QUIT").await?;
        let _ = tokio::time::timeout(self.timeout, self.stream.get_mut().shutdown()).await;
        Ok(())
    }

    /// Sends one command line and reads its status line; returns the text after `+OK`.
    async fn command(&mut self, line: &str, display: &str) -> Result<String> {
        if self.broken {
            return Err(Error::Broken);
        }
        if !self.pending.is_empty() {
            return Err(Error::Protocol {
                during: display.to_owned(),
                line: "pipelined replies still pending".into(),
            });
        }
        let result = self.command_inner(line, display).await;
        if let Err(e) = &result
            && e.breaks_connection()
        {
            self.broken = true;
        }
        result
    }

    async fn command_inner(&mut self, line: &str, display: &str) -> Result<String> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.write_all(&buf, display).await?;
        self.read_status(display).await
    }

    /// Writes and flushes bytes under the timeout.
    async fn write_all(&mut self, buf: &[u8], during: &str) -> Result<()> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.stream.get_mut().write_all(buf).await?;
            self.stream.get_mut().flush().await
        })
        .await
        .map_err(|_| Error::Timeout {
            during: during.to_owned(),
            timeout,
        })?
        .map_err(|cause| Error::Io {
            during: during.to_owned(),
            cause,
        })
    }

    /// Reads a `+OK …` / `-ERR …` line.
    async fn read_status(&mut self, during: &str) -> Result<String> {
        let mut line = Vec::new();
        self.read_line(during, MAX_STATUS_LINE, &mut line).await?;
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        if let Some(rest) = text.strip_prefix("+OK") {
            Ok(rest.trim_start().to_owned())
        } else if let Some(rest) = text.strip_prefix("-ERR") {
            Err(Error::Server {
                command: during.to_owned(),
                message: rest.trim_start().to_owned(),
            })
        } else {
            Err(Error::Protocol {
                during: during.to_owned(),
                line: clip(&text),
            })
        }
    }

    /// Reads one line (ending in LF) of at most `max` bytes, appending it to `buf`.
    async fn read_line(&mut self, during: &str, max: u64, buf: &mut Vec<u8>) -> Result<usize> {
        let timeout = self.timeout;
        let start = buf.len();
        let n = tokio::time::timeout(timeout, (&mut self.stream).take(max).read_until(b'\n', buf))
            .await
            .map_err(|_| Error::Timeout {
                during: during.to_owned(),
                timeout,
            })?
            .map_err(|cause| Error::Io {
                during: during.to_owned(),
                cause,
            })?;
        if n == 0 {
            return Err(Error::Closed {
                during: during.to_owned(),
            });
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 >= max {
                let line = String::from_utf8_lossy(&buf[start..]).into_owned();
                return Err(Error::Protocol {
                    during: during.to_owned(),
                    line: clip(&line),
                });
            }
            return Err(Error::Closed {
                during: during.to_owned(),
            });
        }
        Ok(n)
    }

    /// Reads a multi-line listing (CAPA, LIST, UIDL) line by line until the lone `.`.
    async fn read_listing(
        &mut self,
        during: &str,
        mut each: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            self.read_line(during, MAX_LISTING_LINE, &mut line).await?;
            let l = trim_eol(&line);
            if l == b"." {
                return Ok(());
            }
            let l = l.strip_prefix(b".").unwrap_or(l);
            each(&String::from_utf8_lossy(l))?;
        }
    }

    /// Reads a message body until the lone `.`, unstuffing dots, at most `limit` bytes.
    async fn read_body(
        &mut self,
        during: &str,
        msg: u32,
        limit: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        loop {
            let start = out.len();
            let room = limit.saturating_sub(start as u64);
            // A stuffed dot and the terminator's CRLF may come on top of the room left.
            let max = room + 3;
            match self.read_line(during, max, out).await {
                Ok(_) => {}
                Err(Error::Protocol { .. }) => return Err(Error::TooLarge { msg, limit }),
                Err(e) => return Err(e),
            }
            let line = &out[start..];
            if trim_eol(line) == b"." {
                out.truncate(start);
                return Ok(());
            }
            if line.first() == Some(&b'.') {
                out.remove(start);
            }
            if out.len() as u64 > limit {
                return Err(Error::TooLarge { msg, limit });
            }
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A one-shot fake server: sends `script` (after reading each client line when
    /// `script` entries start with `>`), then closes.
    async fn serve(replies: Vec<&'static [u8]>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut seen = Vec::new();
            let mut it = replies.into_iter();
            if let Some(greeting) = it.next() {
                w.write_all(greeting).await.unwrap();
            }
            for reply in it {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                seen.push(line.trim_end().to_owned());
                w.write_all(reply).await.unwrap();
            }
            seen
        });
        (port, handle)
    }

    fn opts(port: u16) -> Options {
        Options {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            ca_file: None,
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn pop3_unstuffs_dots_and_keeps_server_errors() {
        let (port, server) = serve(vec![
            b"+OK hi\r\n",
            b"+OK\r\nUIDL\r\n.\r\n",
            b"+OK 3 octets\r\n..leading\r\n...\r\nplain\r\n.\r\n",
            b"-ERR [IN-USE] no such message\r\n",
        ])
        .await;
        let mut c = Client::connect(&opts(port)).await.unwrap();
        assert!(c.has_capability("uidl"));
        let m = c.retr(1, 1000).await.unwrap();
        assert_eq!(m, b".leading\r\n..\r\nplain\r\n");
        let err = c.dele(9).await.unwrap_err();
        assert!(
            err.to_string().contains("[IN-USE] no such message"),
            "{err}"
        );
        drop(server);
    }

    #[tokio::test]
    async fn pop3_pipelined_replies_come_back_in_order() {
        let (port, server) = serve(vec![
            b"+OK hi\r\n",
            b"+OK\r\nPIPELINING\r\n.\r\n",
            b"+OK\r\none\r\n.\r\n",
            b"-ERR no such message\r\n",
            b"+OK marked\r\n",
            b"+OK\r\n..three\r\n.\r\n",
        ])
        .await;
        let mut c = Client::connect(&opts(port)).await.unwrap();
        assert!(c.pipelining());
        c.send_retr(1);
        c.send_retr(2);
        c.send_dele(1);
        c.send_retr(3);
        assert_eq!(c.pending(), 4);
        assert!(matches!(
            c.noop().await.unwrap_err(),
            Error::Protocol { .. }
        ));
        let mut replies = Vec::new();
        while c.pending() > 0 {
            replies.push(match c.read_reply(100).await.unwrap() {
                Reply::Retr {
                    msg,
                    result: Ok(raw),
                } => format!("{msg}:{}", String::from_utf8_lossy(&raw)),
                Reply::Retr {
                    msg,
                    result: Err(e),
                } => format!("{msg}:{e}"),
                Reply::Dele { msg } => format!("dele {msg}"),
            });
        }
        assert_eq!(replies[0], "1:one\r\n");
        assert!(
            replies[1].starts_with("2:") && replies[1].contains("no such message"),
            "{}",
            replies[1]
        );
        assert_eq!(
            replies[2..],
            ["dele 1".to_owned(), "3:.three\r\n".to_owned()]
        );
        let seen = server.await.unwrap();
        assert_eq!(seen, ["CAPA", "RETR 1", "RETR 2", "DELE 1", "RETR 3"]);
    }

    #[tokio::test]
    async fn pop3_hang_up_mid_reply_is_an_error() {
        let (port, _server) = serve(vec![
            b"+OK hi\r\n",
            b"+OK\r\n.\r\n",
            b"+OK\r\nSubject: x\r\n\r\nhalf a li",
        ])
        .await;
        let mut c = Client::connect(&opts(port)).await.unwrap();
        let started = std::time::Instant::now();
        let err = c.retr(1, 1000).await.unwrap_err();
        assert!(matches!(err, Error::Closed { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(c.noop().await.unwrap_err(), Error::Broken));
    }

    #[tokio::test]
    async fn pop3_message_over_the_cap_is_refused() {
        let (port, _server) = serve(vec![
            b"+OK hi\r\n",
            b"+OK\r\n.\r\n",
            b"+OK\r\n0123456789\r\n0123456789\r\n.\r\n",
        ])
        .await;
        let mut c = Client::connect(&opts(port)).await.unwrap();
        let err = c.retr(1, 15).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { msg: 1, limit: 15 }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn pop3_wrong_password_is_an_auth_error_without_the_password() {
        let (port, _server) = serve(vec![
            b"+OK hi\r\n",
            b"+OK\r\n.\r\n",
            b"+OK\r\n",
            b"-ERR [AUTH] Authentication failed.\r\n",
        ])
        .await;
        let mut c = Client::connect(&opts(port)).await.unwrap();
        let err = c.login("bounces", "s3cret-pw").await.unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(
            text.contains("Authentication failed") && !text.contains("s3cret-pw"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn pop3_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let o = Options {
            timeout: Duration::from_millis(200),
            ..opts(port)
        };
        let err = Client::connect(&o).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn pop3_garbage_greeting_is_a_protocol_error() {
        let (port, _server) = serve(vec![b"220 smtp.example.org ESMTP\r\n"]).await;
        let err = Client::connect(&opts(port)).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
    }
}

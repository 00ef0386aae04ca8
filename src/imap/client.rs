//! The IMAP connection of the source: TCP, TLS (implicit, or STARTTLS after the
//! greeting), login, and the commands a pass and IDLE use, each under the section's
//! `timeout`. Built on `async-imap`; what it lacks (STARTTLS, timeouts, telling a lost
//! connection from a refused command) is here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response, Status};
use futures_util::TryStreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Error, Result};
use crate::config::{ImapConfig, TlsMode};

/// The byte stream under the IMAP session: plain TCP or TLS over it.
#[derive(Debug)]
pub(crate) enum Stream {
    /// No TLS (loopback only).
    Plain(TcpStream),
    /// TLS, implicit or after STARTTLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Session = async_imap::Session<Stream>;

/// One message as a listing names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Its UID.
    pub uid: u32,
    /// RFC822.SIZE, when the server gave it.
    pub size: Option<u64>,
}

/// What ended a wait in IDLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The server reported a new message (EXISTS).
    NewMail,
    /// The wait's time ran out (re-issue IDLE, or poll).
    Timeout,
    /// The shutdown future completed; IDLE was ended with DONE.
    Shutdown,
}

/// A logged-in connection.
pub(crate) struct Connection {
    session: Option<Session>,
    timeout: Duration,
    /// The server offers MOVE (RFC 6851).
    pub has_move: bool,
    /// The server offers UIDPLUS (RFC 4315): UID EXPUNGE removes only the named messages.
    pub has_uidplus: bool,
    /// The server offers IDLE (RFC 2177).
    pub has_idle: bool,
    /// Folders created (or found to exist) on this connection.
    created: std::collections::BTreeSet<String>,
}

/// A command's error: a lost connection (I/O, EOF) or a refusal.
fn imap_err(during: &str, cause: async_imap::error::Error) -> Error {
    Error::Imap {
        during: during.to_owned(),
        cause,
    }
}

impl Connection {
    /// Connects, secures the connection as `tls` says and logs in with `password`.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Tls`], [`Error::Timeout`], [`Error::Auth`] (the
    /// server refused the login), [`Error::Imap`].
    pub(crate) async fn open(
        config: &ImapConfig,
        credentials: &crate::oauth::Credentials,
    ) -> Result<Connection> {
        crate::config::check_plaintext("imap", &config.host, config.tls)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let timeout = config.timeout;
        let tcp = tokio::time::timeout(
            timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        .map_err(|_| Error::Timeout {
            during: "connect".into(),
            timeout,
        })?
        .map_err(|cause| Error::Connect {
            host: config.host.clone(),
            port: config.port,
            cause,
        })?;
        let _ = tcp.set_nodelay(true);
        let stream = match config.tls {
            TlsMode::Implicit => Stream::Tls(Box::new(handshake(config, tcp).await?)),
            TlsMode::None => Stream::Plain(tcp),
            TlsMode::Starttls => {
                let mut client = async_imap::Client::new(Stream::Plain(tcp));
                greeting(&mut client, timeout).await?;
                within(timeout, "STARTTLS", async {
                    client.run_command_and_check_ok("STARTTLS", None).await
                })
                .await?;
                let Stream::Plain(tcp) = client.into_inner() else {
                    return Err(Error::Protocol("STARTTLS over TLS".into()));
                };
                Stream::Tls(Box::new(handshake(config, tcp).await?))
            }
        };
        let mut client = async_imap::Client::new(stream);
        if config.tls != TlsMode::Starttls {
            greeting(&mut client, timeout).await?;
        }
        let user = &config.username;
        let (during, login) = match credentials.login(user).await? {
            crate::oauth::LoginWith::Password(password) => (
                "LOGIN",
                tokio::time::timeout(timeout, client.login(user, password)).await,
            ),
            crate::oauth::LoginWith::Sasl(mechanism, initial) => (
                "AUTHENTICATE",
                tokio::time::timeout(timeout, client.authenticate(mechanism, Sasl(Some(initial))))
                    .await,
            ),
        };
        let login = login.map_err(|_| Error::Timeout {
            during: during.into(),
            timeout,
        })?;
        let mut session = match login {
            Ok(s) => s,
            Err((async_imap::error::Error::No(text), _)) => {
                credentials.refused();
                return Err(Error::Auth(text));
            }
            Err((cause, _)) => return Err(imap_err(during, cause)),
        };
        let caps = within(timeout, "CAPABILITY", session.capabilities()).await?;
        Ok(Connection {
            has_move: caps.has_str("MOVE"),
            has_uidplus: caps.has_str("UIDPLUS"),
            has_idle: caps.has_str("IDLE"),
            session: Some(session),
            timeout,
            created: Default::default(),
        })
    }

    fn session(&mut self) -> Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| Error::Protocol("the connection was lost in IDLE".into()))
    }

    /// SELECTs `folder`; returns its UIDVALIDITY and message count.
    pub(crate) async fn select(&mut self, folder: &str) -> Result<(u32, u32)> {
        let timeout = self.timeout;
        let s = self.session()?;
        // What arrived before is about the previous selection.
        while s.unsolicited_responses.try_recv().is_ok() {}
        let mailbox = within(timeout, "SELECT", s.select(folder)).await?;
        let validity = mailbox
            .uid_validity
            .ok_or_else(|| Error::Protocol(format!("SELECT {folder}: no UIDVALIDITY")))?;
        Ok((validity, mailbox.exists))
    }

    /// Every message of the selected folder: UID and size, by UID.
    pub(crate) async fn list(&mut self) -> Result<Vec<Listed>> {
        let timeout = self.timeout;
        let s = self.session()?;
        let fetches = within(timeout, "UID FETCH (listing)", async {
            s.uid_fetch("1:*", "(UID RFC822.SIZE)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        let mut out: Vec<Listed> = fetches
            .iter()
            .filter_map(|f| {
                Some(Listed {
                    uid: f.uid?,
                    size: f.size.map(u64::from),
                })
            })
            .collect();
        out.sort_unstable_by_key(|l| l.uid);
        out.dedup_by_key(|l| l.uid);
        Ok(out)
    }

    /// Message `uid`'s bytes (without setting `\Seen`); `None` when the folder no longer
    /// holds it.
    pub(crate) async fn fetch(&mut self, uid: u32) -> Result<Option<Vec<u8>>> {
        let timeout = self.timeout;
        let s = self.session()?;
        let fetches = within(timeout, "UID FETCH", async {
            s.uid_fetch(uid.to_string(), "(UID RFC822.SIZE BODY.PEEK[])")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body().map(<[u8]>::to_vec)))
    }

    /// Creates `folder` unless this connection did already or it exists.
    async fn ensure_folder(&mut self, folder: &str) -> Result<()> {
        if self.created.contains(folder) {
            return Ok(());
        }
        let timeout = self.timeout;
        let s = self.session()?;
        match tokio::time::timeout(timeout, s.create(folder)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    during: "CREATE".into(),
                    timeout,
                });
            }
            // NO: most likely [ALREADYEXISTS]; a folder that truly cannot be made fails
            // the MOVE that follows, with the server's reason.
            Ok(Ok(())) | Ok(Err(async_imap::error::Error::No(_))) => {}
            Ok(Err(cause)) => return Err(imap_err("CREATE", cause)),
        }
        self.created.insert(folder.to_owned());
        Ok(())
    }

    /// Moves messages `uids` to `folder` (created when missing): UID MOVE, or UID COPY +
    /// `\Deleted` + expunge without MOVE.
    pub(crate) async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.ensure_folder(folder).await?;
        let timeout = self.timeout;
        let set = uid_set(uids);
        if self.has_move {
            let s = self.session()?;
            return within(timeout, "UID MOVE", s.uid_mv(&set, folder)).await;
        }
        {
            let s = self.session()?;
            within(timeout, "UID COPY", s.uid_copy(&set, folder)).await?;
        }
        self.delete(uids).await
    }

    /// Deletes messages `uids`: `\Deleted`, then UID EXPUNGE of them (plain EXPUNGE
    /// without UIDPLUS, which also removes other messages marked `\Deleted`).
    pub(crate) async fn delete(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let timeout = self.timeout;
        let uidplus = self.has_uidplus;
        let set = uid_set(uids);
        let s = self.session()?;
        within(timeout, "UID STORE", async {
            s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        if uidplus {
            within(timeout, "UID EXPUNGE", async {
                s.uid_expunge(&set).await?.try_collect::<Vec<_>>().await
            })
            .await?;
        } else {
            within(timeout, "EXPUNGE", async {
                s.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        Ok(())
    }

    /// Did the server report new messages (EXISTS) since the last SELECT, between
    /// commands? Such a report is not repeated in IDLE, so the caller runs a pass.
    pub(crate) fn new_mail_reported(&mut self) -> bool {
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        let mut seen = false;
        while let Ok(r) = s.unsolicited_responses.try_recv() {
            seen |= matches!(r, async_imap::types::UnsolicitedResponse::Exists(_));
        }
        seen
    }

    /// Waits in IDLE until the server reports a new message, `max` passes or `shutdown`
    /// completes; ends IDLE with DONE in every case.
    ///
    /// # Errors
    /// A lost connection (the server closed it, said BYE, or a command failed).
    pub(crate) async fn idle<F: Future<Output = ()>>(
        &mut self,
        max: Duration,
        mut shutdown: Pin<&mut F>,
    ) -> Result<Wake> {
        let timeout = self.timeout;
        let session = self
            .session
            .take()
            .ok_or_else(|| Error::Protocol("the connection was lost in IDLE".into()))?;
        let mut handle = session.idle();
        within(timeout, "IDLE", handle.init()).await?;
        let deadline = tokio::time::Instant::now() + max;
        let wake = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Wake::Timeout;
            }
            let (wait, _interrupt) = handle.wait_with_timeout(left);
            let got = tokio::select! {
                r = wait => r,
                () = shutdown.as_mut() => Ok(IdleResponse::ManualInterrupt),
            };
            match got {
                Ok(IdleResponse::Timeout) => break Wake::Timeout,
                // Ours (the shutdown), or the stream ended: told apart below.
                Ok(IdleResponse::ManualInterrupt) => break Wake::Shutdown,
                Ok(IdleResponse::NewData(data)) => match data.parsed() {
                    Response::MailboxData(MailboxDatum::Exists(_)) => break Wake::NewMail,
                    Response::Data {
                        status: Status::Bye,
                        information,
                        ..
                    } => {
                        return Err(Error::Protocol(format!(
                            "the server ended the connection in IDLE: {}",
                            information.as_deref().unwrap_or("BYE")
                        )));
                    }
                    // EXPUNGE, flag changes, RECENT: nothing new to read.
                    _ => continue,
                },
                Err(cause) => return Err(imap_err("IDLE", cause)),
            }
        };
        // A stream that ended looks like an interrupt; DONE on it fails, which is the
        // lost connection reported.
        let session = within(timeout, "DONE", handle.done()).await?;
        self.session = Some(session);
        Ok(wake)
    }

    /// Logs out (best effort: the connection is dropped either way).
    pub(crate) async fn logout(mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = tokio::time::timeout(self.timeout, s.logout()).await;
        }
    }
}

/// The SASL exchange of an OAuth login: the initial response to the server's first `+`,
/// then an empty response to any further one (the server's error challenge).
struct Sasl(Option<Vec<u8>>);

impl async_imap::Authenticator for Sasl {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.take().unwrap_or_default()
    }
}

/// Reads the server's greeting: an untagged OK (or PREAUTH); BYE is a refusal.
async fn greeting(client: &mut async_imap::Client<Stream>, timeout: Duration) -> Result<()> {
    let read = tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(|_| Error::Timeout {
            during: "greeting".into(),
            timeout,
        })?;
    match read {
        None => Err(imap_err(
            "greeting",
            async_imap::error::Error::ConnectionLost,
        )),
        Some(Err(e)) => Err(imap_err("greeting", e.into())),
        Some(Ok(r)) => match r.parsed() {
            Response::Data {
                status: Status::Ok | Status::PreAuth,
                ..
            } => Ok(()),
            other => Err(Error::Protocol(format!("greeting: {other:?}"))),
        },
    }
}

/// An IMAP UID set of `uids` (sorted here), runs written as `a:b`: `1:3,7,9:10`.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Runs `f` under `timeout`, naming the command in its errors.
async fn within<T>(
    timeout: Duration,
    during: &str,
    f: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(Error::Timeout {
            during: during.to_owned(),
            timeout,
        }),
        Ok(Err(cause)) => Err(imap_err(during, cause)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The TLS handshake over `tcp`, verifying the server against `host` with the platform's
/// verifier and the section's `ca_file` (as POP3 does).
async fn handshake(
    config: &ImapConfig,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls_err = |during: &str, e: &dyn std::fmt::Display| Error::Tls {
        during: during.to_owned(),
        message: e.to_string(),
    };
    let extra = match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| tls_err(&format!("reading {}", path.display()), &e))?;
            crate::pop3::tls::pem_roots(&pem)
                .map_err(|e| tls_err(&format!("reading {}", path.display()), &e))?
        }
        None => Vec::new(),
    };
    let tls = crate::pop3::tls::platform_config(extra).map_err(|e| tls_err("configuring", &e))?;
    let name = ServerName::try_from(config.host.clone()).map_err(|e| tls_err("server name", &e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    tokio::time::timeout(config.timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| Error::Timeout {
            during: "TLS handshake".into(),
            timeout: config.timeout,
        })?
        .map_err(|e| tls_err("handshake", &e))
}

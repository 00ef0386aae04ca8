//! OAuth 2.0 logins for the mailbox sources (POP3 and IMAP): where the access token
//! comes from, and the SASL messages that carry it.
//!
//! A token comes from a program (`token_command`: run for each login, its first line of
//! output is the token) or from a refresh token (`oauth2`: a POST of
//! `grant_type=refresh_token` to the provider's token endpoint; the access token is kept
//! until shortly before its `expires_in`, and a refresh token the provider rotates is
//! kept for the next refresh). Tokens and secrets are never logged or put in an error.
//!
//! SASL: XOAUTH2 is `user=U ^A auth=Bearer T ^A ^A`; OAUTHBEARER (RFC 7628) is the GS2
//! header `n,a=U,` then `^A auth=Bearer T ^A ^A`. Both are sent base64-encoded by the
//! protocol's AUTH / AUTHENTICATE; a server that refuses answers with a continuation
//! holding an error, to which the client sends an empty response.

use std::time::{Duration, Instant};

use crate::config::{self, AuthMethod, Login, OAuth2Config};

/// Errors getting a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token program could not be run, failed, or printed no token.
    #[error("token_command {program}: {reason}")]
    Command {
        /// The program.
        program: String,
        /// Why (its exit status and standard error).
        reason: String,
    },
    /// The token endpoint failed or refused.
    #[error("oauth2 token endpoint {url}: {reason}")]
    Endpoint {
        /// The endpoint.
        url: String,
        /// Why (the status and the provider's `error`, never a token).
        reason: String,
    },
    /// A variable the config names is not set.
    #[error("{0}")]
    Config(#[from] config::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// How a source logs in, with what the login needs.
pub enum Credentials {
    /// A password.
    Password(String),
    /// A SASL mechanism with an access token.
    Token {
        /// The mechanism.
        mechanism: Mechanism,
        /// Where the token comes from.
        tokens: Box<TokenSource>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(..)"),
            Credentials::Token { mechanism, tokens } => f
                .debug_struct("Token")
                .field("mechanism", mechanism)
                .field("tokens", tokens)
                .finish(),
        }
    }
}

impl Credentials {
    /// The credentials a section's login keys name, reading the variables they name.
    ///
    /// # Errors
    /// [`Error::Config`] when a variable is not set (or the keys do not fit together).
    pub fn from_login(section: &'static str, login: &Login<'_>) -> Result<Credentials> {
        config::check_auth(section, login)?;
        if login.auth == AuthMethod::Password {
            return Ok(Credentials::Password(config::secret_from_env(
                login.password_env,
            )?));
        }
        let tokens = match (login.token_command, login.oauth2) {
            (Some(cmd), _) => TokenSource::command(cmd.to_vec(), login.timeout),
            (None, Some(o)) => TokenSource::refresh(o, login.timeout)?,
            (None, None) => {
                return Err(Error::Config(config::Error::Auth {
                    section,
                    reason: "auth by OAuth 2.0 needs token_command or an oauth2 table".into(),
                }));
            }
        };
        let mechanism = match login.auth {
            AuthMethod::Oauthbearer => Mechanism::Oauthbearer,
            _ => Mechanism::Xoauth2,
        };
        Ok(Credentials::Token {
            mechanism,
            tokens: Box::new(tokens),
        })
    }

    /// What a login as `user` sends: the password, or a SASL mechanism's name and its
    /// initial response (raw, not yet base64), with a token got now.
    ///
    /// # Errors
    /// The token source's.
    pub async fn login(&self, user: &str) -> Result<LoginWith<'_>> {
        match self {
            Credentials::Password(p) => Ok(LoginWith::Password(p)),
            Credentials::Token { mechanism, tokens } => {
                let token = tokens.token().await?;
                Ok(match mechanism {
                    Mechanism::Xoauth2 => LoginWith::Sasl("XOAUTH2", xoauth2(user, &token)),
                    Mechanism::Oauthbearer => {
                        LoginWith::Sasl("OAUTHBEARER", oauthbearer(user, &token))
                    }
                })
            }
        }
    }

    /// Forgets a cached token (after the server refused it).
    pub fn refused(&self) {
        if let Credentials::Token { tokens, .. } = self {
            tokens.forget();
        }
    }
}

/// A SASL mechanism carrying an OAuth 2.0 token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// XOAUTH2 (Google's, also Microsoft's).
    Xoauth2,
    /// OAUTHBEARER (RFC 7628).
    Oauthbearer,
}

/// What one login sends.
pub enum LoginWith<'a> {
    /// This password.
    Password(&'a str),
    /// This mechanism (its name) with this initial response (raw).
    Sasl(&'static str, Vec<u8>),
}

impl std::fmt::Debug for LoginWith<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginWith::Password(_) => f.write_str("Password(..)"),
            LoginWith::Sasl(m, _) => write!(f, "Sasl({m}, ..)"),
        }
    }
}

/// XOAUTH2's message: `user=U\x01auth=Bearer T\x01\x01`.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// OAUTHBEARER's message (RFC 7628 §3.1): `n,a=U,\x01auth=Bearer T\x01\x01`, with `,`
/// and `=` in the user escaped as `=2C` and `=3D` (RFC 5801).
pub fn oauthbearer(user: &str, token: &str) -> Vec<u8> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// Where access tokens come from.
pub struct TokenSource {
    kind: Kind,
}

enum Kind {
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    Refresh {
        config: Box<OAuth2Config>,
        client_secret: Option<String>,
        http: reqwest::Client,
        /// The refresh token (the provider may rotate it) and the cached access token.
        state: tokio::sync::Mutex<RefreshState>,
    },
}

struct RefreshState {
    refresh_token: String,
    access: Option<(String, Instant)>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Command { argv, .. } => f
                .debug_struct("TokenSource")
                .field("command", &argv.first())
                .finish_non_exhaustive(),
            Kind::Refresh { config, .. } => f
                .debug_struct("TokenSource")
                .field("token_url", &config.token_url)
                .finish_non_exhaustive(),
        }
    }
}

/// How long before its expiry a cached access token is no longer used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// At most this much of a program's standard error goes into an error.
const STDERR_SHOWN: usize = 500;

impl TokenSource {
    /// Tokens from a program (`argv[0]` with the rest as arguments), run for each login.
    pub fn command(argv: Vec<String>, timeout: Duration) -> TokenSource {
        TokenSource {
            kind: Kind::Command { argv, timeout },
        }
    }

    /// Tokens from the refresh-token flow of `config`, reading its variables.
    ///
    /// # Errors
    /// [`Error::Config`] when a variable is not set.
    pub fn refresh(config: &OAuth2Config, timeout: Duration) -> Result<TokenSource> {
        let refresh_token = config::secret_from_env(&config.refresh_token_env)?;
        let client_secret = match &config.client_secret_env {
            Some(var) => Some(config::secret_from_env(var)?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Endpoint {
                url: config.token_url.clone(),
                reason: format!("setting up the HTTP client: {e}"),
            })?;
        Ok(TokenSource {
            kind: Kind::Refresh {
                config: Box::new(config.clone()),
                client_secret,
                http,
                state: tokio::sync::Mutex::new(RefreshState {
                    refresh_token,
                    access: None,
                }),
            },
        })
    }

    /// An access token.
    ///
    /// # Errors
    /// [`Error::Command`] or [`Error::Endpoint`].
    pub async fn token(&self) -> Result<String> {
        match &self.kind {
            Kind::Command { argv, timeout } => run_command(argv, *timeout).await,
            Kind::Refresh {
                config,
                client_secret,
                http,
                state,
            } => {
                let mut state = state.lock().await;
                if let Some((token, until)) = &state.access
                    && Instant::now() < *until
                {
                    return Ok(token.clone());
                }
                let (token, expires_in, rotated) =
                    refresh(http, config, client_secret.as_deref(), &state.refresh_token).await?;
                if let Some(rotated) = rotated {
                    state.refresh_token = rotated;
                }
                state.access = expires_in
                    .and_then(|e| e.checked_sub(EXPIRY_MARGIN))
                    .map(|keep| (token.clone(), Instant::now() + keep));
                Ok(token)
            }
        }
    }

    /// Forgets the cached access token, so the next login gets a fresh one.
    pub fn forget(&self) {
        if let Kind::Refresh { state, .. } = &self.kind
            && let Ok(mut state) = state.try_lock()
        {
            state.access = None;
        }
    }
}

async fn run_command(argv: &[String], timeout: Duration) -> Result<String> {
    let program = argv.first().cloned().unwrap_or_default();
    let fail = |reason: String| Error::Command {
        program: program.clone(),
        reason,
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv[1.min(argv.len())..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("no token within {timeout:?} (killed)")))?
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    let stderr: String = stderr.chars().take(STDERR_SHOWN).collect();
    if !out.status.success() {
        return Err(fail(format!("{}: {stderr}", out.status)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().next().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(fail(format!("printed no token (stderr: {stderr})"))),
    }
}

/// One refresh: (access token, its lifetime, a rotated refresh token).
async fn refresh(
    http: &reqwest::Client,
    config: &OAuth2Config,
    client_secret: Option<&str>,
    refresh_token: &str,
) -> Result<(String, Option<Duration>, Option<String>)> {
    let fail = |reason: String| Error::Endpoint {
        url: config.token_url.clone(),
        reason,
    };
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", &config.client_id),
    ];
    if let Some(secret) = client_secret {
        form.push(("client_secret", secret));
    }
    if let Some(scope) = &config.scope {
        form.push(("scope", scope));
    }
    let response = http
        .post(&config.token_url)
        .form(&form)
        .send()
        .await
        // Without the URL's query or the body: they may hold secrets.
        .map_err(|e| fail(e.without_url().to_string()))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| fail(format!("{status}, not a JSON answer: {}", e.without_url())))?;
    if !status.is_success() {
        let error = body["error"].as_str().unwrap_or("no error given");
        let description = body["error_description"].as_str().unwrap_or("");
        return Err(fail(
            format!("{status}: {error} {description}").trim().to_owned(),
        ));
    }
    let token = body["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail(format!("{status}, but no access_token in the answer")))?;
    let expires_in = body["expires_in"].as_u64().map(Duration::from_secs);
    let rotated = body["refresh_token"].as_str().map(str::to_owned);
    Ok((token.to_owned(), expires_in, rotated))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sasl_messages_are_framed_as_the_mechanisms_say() {
        assert_eq!(
            xoauth2("u@example.org", "tok"),
            b"user=u@example.org\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c", "tok"),
            b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"
        );
    }

    #[tokio::test]
    async fn token_command_gives_its_first_line_or_a_clear_error() {
        let argv = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let t = TokenSource::command(argv("echo ' tok-1 '; echo second"), Duration::from_secs(5));
        assert_eq!(t.token().await.unwrap(), "tok-1");
        let t = TokenSource::command(argv("echo nope >&2; exit 3"), Duration::from_secs(5));
        let e = t.token().await.unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("exit status: 3"), "{e}");
        let t = TokenSource::command(argv("true"), Duration::from_secs(5));
        assert!(
            t.token()
                .await
                .unwrap_err()
                .to_string()
                .contains("no token")
        );
        let t = TokenSource::command(argv("sleep 5"), Duration::from_millis(100));
        assert!(t.token().await.unwrap_err().to_string().contains("killed"));
        let t = TokenSource::command(vec!["/nonexistent/prog".into()], Duration::from_secs(1));
        assert!(
            t.token()
                .await
                .unwrap_err()
                .to_string()
                .contains("cannot run")
        );
    }
}

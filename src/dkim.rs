//! DKIM signing of campaign messages, between rendering and sending: a rendered
//! [`lettre::Message`] comes in, the same message with a `DKIM-Signature` header goes out.
//!
//! The key (`[smtp.dkim] private_key_file`, PEM) is read and checked once, at start
//! ([`Dkim::from_config`]); signing a message only hashes and signs. The algorithm follows
//! from the key: an RSA key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) signs
//! `rsa-sha256`, an Ed25519 key (PKCS#8) signs `ed25519-sha256` (RFC 8463). Headers and
//! body are canonicalized relaxed/relaxed; the signed headers are [`SIGNED_HEADERS`].

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::der::Decode;
use rsa::pkcs8::der::asn1::{ObjectIdentifier, OctetStringRef};
use rsa::pkcs8::{PrivateKeyInfo, SecretDocument};
use rsa::traits::PublicKeyParts;

use crate::config;

/// The headers a signature covers, in `h=` order. lettre writes `h=` from this fixed list,
/// not from the message, so a header the message lacks (say `Feedback-ID` before a
/// campaign has one) is still listed: RFC 6376 §5.4 allows that (it hashes as empty), and
/// it keeps a relay from adding the header later without breaking the signature. Listing
/// only the headers present would mean a lettre `DkimConfig`, that is a parsed key, per
/// set of headers.
/// `MIME-Version` is signed too. `Content-Type` cannot be: lettre signs the message's own
/// headers, and the top-level `Content-Type` of a multipart message is written by its body
/// part, so lettre would hash it as absent and every signature would fail (dkimpy says
/// so); the body hash still covers every part and its boundaries.
pub const SIGNED_HEADERS: [&str; 9] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// RSA keys shorter than this are refused (RFC 8301 §3.2: verifiers may reject them;
/// dkimpy does by default).
pub const MIN_RSA_BITS: usize = 1024;

/// `id-Ed25519` (RFC 8410).
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file could not be read.
    #[error("reading the DKIM key {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not also a `source()`).
        cause: std::io::Error,
    },
    /// The key file holds no key rebound can sign with.
    #[error("the DKIM key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `domain` or `selector` cannot go in a `DKIM-Signature` header.
    #[error("[smtp.dkim] {0}")]
    Invalid(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The signing algorithm, from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256`.
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        })
    }
}

/// A loaded DKIM signer: the checked key, its domain and selector.
pub struct Dkim {
    config: DkimConfig,
    algorithm: Algorithm,
    bits: usize,
    domain: String,
    selector: String,
}

impl fmt::Debug for Dkim {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dkim")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Dkim {
    /// Reads and checks the key `[smtp.dkim]` names (a relative path is relative to the
    /// working directory, like `ca_file`).
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, [`Error::Key`] when it holds no
    /// supported key, [`Error::Invalid`] for a bad domain or selector.
    pub fn from_config(config: &config::DkimConfig) -> Result<Dkim> {
        let pem =
            std::fs::read_to_string(&config.private_key_file).map_err(|cause| Error::Read {
                path: config.private_key_file.clone(),
                cause,
            })?;
        Dkim::from_pem(
            &config.domain,
            &config.selector,
            &pem,
            &config.private_key_file,
        )
    }

    /// A signer for `domain` and `selector` from PEM text; `path` only names the key in
    /// errors.
    ///
    /// # Errors
    /// [`Error::Key`], [`Error::Invalid`].
    pub fn from_pem(domain: &str, selector: &str, pem: &str, path: &Path) -> Result<Dkim> {
        check_name("domain", domain)?;
        check_name("selector", selector)?;
        let key_err = |reason: String| Error::Key {
            path: path.to_owned(),
            reason,
        };
        let (algorithm, bits, key) = parse_key(pem).map_err(key_err)?;
        let config = DkimConfig::new(
            selector.to_owned(),
            domain.to_owned(),
            key,
            SIGNED_HEADERS
                .iter()
                .map(|h| HeaderName::new_from_ascii_str(h))
                .collect(),
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        Ok(Dkim {
            config,
            algorithm,
            bits,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
        })
    }

    /// Adds a `DKIM-Signature` header to `message`.
    pub fn sign(&self, message: &mut lettre::Message) {
        message.sign(&self.config);
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key's size in bits (256 for Ed25519).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The DNS name whose TXT record holds the public key: `selector._domainkey.domain`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

/// A domain or selector: dot-separated labels of ASCII letters, digits, `-` and `_` (an
/// internationalized domain in its `xn--` form).
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {name:?} is not a DNS name (ASCII letters, digits, '-', '_' and dots; \
             an internationalized domain in its xn-- form)"
        )))
    }
}

const SUPPORTED: &str = "expected a PEM RSA private key (\"RSA PRIVATE KEY\" or \"PRIVATE KEY\") \
     or a PEM Ed25519 private key (\"PRIVATE KEY\")";

/// The algorithm, size and lettre key of PEM text.
fn parse_key(pem: &str) -> std::result::Result<(Algorithm, usize, DkimSigningKey), String> {
    let pem = pem.trim_start();
    let label = rsa::pkcs8::der::pem::decode_label(pem.as_bytes())
        .map_err(|e| format!("not a PEM key ({e}): {SUPPORTED}"))?;
    match label {
        "RSA PRIVATE KEY" | "PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err("the key is encrypted; rebound needs it unencrypted \
                 (`openssl pkey -in KEY -out PLAIN`)"
                .into());
        }
        other => return Err(format!("a PEM \"{other}\": {SUPPORTED}")),
    }
    let (_, doc) =
        SecretDocument::from_pem(pem).map_err(|e| format!("a damaged PEM \"{label}\": {e}"))?;
    let rsa = match label {
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(doc.as_bytes())
            .map_err(|e| format!("not an RSA private key: {e}"))?,
        // "PRIVATE KEY", checked above.
        _ => {
            let info = PrivateKeyInfo::from_der(doc.as_bytes())
                .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
            if info.algorithm.oid == ED25519_OID {
                let seed = OctetStringRef::from_der(info.private_key)
                    .ok()
                    .filter(|s| s.as_bytes().len() == 32)
                    .ok_or("not an Ed25519 private key (the seed is not 32 bytes)")?;
                // lettre takes the 32-byte seed in base64.
                let b64 = base64::engine::general_purpose::STANDARD.encode(seed.as_bytes());
                let key = DkimSigningKey::new(&b64, DkimSigningAlgorithm::Ed25519)
                    .map_err(|e| format!("Ed25519 key: {e}"))?;
                return Ok((Algorithm::Ed25519Sha256, 256, key));
            }
            if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
                return Err(format!(
                    "a key of algorithm {}, not RSA or Ed25519: {SUPPORTED}",
                    info.algorithm.oid
                ));
            }
            RsaPrivateKey::try_from(info).map_err(|e| format!("not an RSA private key: {e}"))?
        }
    };
    let bits = rsa.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits; DKIM needs at least {MIN_RSA_BITS} (2048 recommended)"
        ));
    }
    // lettre reads RSA keys as PKCS#1 PEM only: hand it the key re-encoded.
    let pkcs1 = rsa
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| format!("RSA key: {e}"))?;
    let key = DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
        .map_err(|e| format!("RSA key: {e}"))?;
    Ok((Algorithm::RsaSha256, bits, key))
}

#[cfg(test)]
mod test {
    use super::*;

    fn err(pem: &str) -> String {
        Dkim::from_pem("example.org", "s1", pem, Path::new("k.pem"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn dkim_rejects_what_is_not_a_key() {
        let e = err("hello");
        assert!(e.starts_with("the DKIM key k.pem: not a PEM key"), "{e}");
        let e = err("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(e.contains("a PEM \"CERTIFICATE\""), "{e}");
        let e = err(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(e.contains("encrypted"), "{e}");
        let e = err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(e.contains("a damaged PEM \"PRIVATE KEY\""), "{e}");
    }

    #[test]
    fn dkim_rejects_bad_names() {
        for (domain, selector) in [("", "s"), ("example.org", "a;b"), ("exa mple.org", "s")] {
            let e = Dkim::from_pem(domain, selector, "", Path::new("k"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("[smtp.dkim] "), "{e}");
        }
    }
}

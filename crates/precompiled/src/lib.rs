//! The one `unsafe` operation of rebound, kept out of the host crate (which forbids
//! `unsafe`): turning precompiled component code from rebound's own on-disk cache back into
//! a [`Component`].
//!
//! wasmtime's [`Component::deserialize`] is `unsafe` because it maps machine code: bytes
//! that did not come from [`Engine::precompile_component`] could do anything. The cache
//! therefore only ever hands this crate bytes whose [`seal`] verifies: an HMAC-SHA256,
//! under a secret key of the host kept outside the cache directory, of the entry's name
//! and the code. Whoever can write the cache directory but not read the key cannot make
//! an entry that loads: replaced, truncated or corrupted code, a digest recomputed over
//! new code, or a genuine entry moved under another name are all refused before wasmtime
//! sees them. (The host also refuses a cache directory or entry that is not its own; see
//! `rebound::policy::cache`.)
//!
//! wasmtime additionally refuses code from another wasmtime version or another engine
//! configuration with an error, so a stale cache is a cache miss, never a crash.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// Length of the key, in bytes.
pub const KEY_LEN: usize = 32;

fn mac(key: &[u8; KEY_LEN], name: &str, precompiled: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    // The name is length-prefixed, so no (name, code) pair reads as another.
    mac.update(&(name.len() as u64).to_be_bytes());
    mac.update(name.as_bytes());
    mac.update(precompiled);
    mac
}

/// The seal of precompiled bytes stored under `name`: HMAC-SHA256 under `key` of the
/// name and the bytes, hex. Store it next to the bytes; keep the key elsewhere.
pub fn seal(key: &[u8; KEY_LEN], name: &str, precompiled: &[u8]) -> String {
    mac(key, name, precompiled)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads precompiled bytes the host stored under `name`, after checking them against their
/// seal (in constant time).
///
/// # Errors
/// When the seal does not match, or when wasmtime refuses the code (another wasmtime
/// version or engine configuration).
pub fn load(
    engine: &Engine,
    key: &[u8; KEY_LEN],
    name: &str,
    precompiled: &[u8],
    seal_hex: &str,
) -> Result<Component> {
    let Some(tag) = unhex(seal_hex.trim()) else {
        wasmtime::bail!("the seal of the precompiled code is not a hex HMAC");
    };
    if mac(key, name, precompiled).verify_slice(&tag).is_err() {
        wasmtime::bail!(
            "precompiled code does not match its seal (not sealed with this host's key)"
        );
    }
    // SAFETY: the bytes are exactly those the host produced with
    // `Engine::precompile_component` and sealed under its secret key when it wrote them
    // (checked just above, on the in-memory copy that is then deserialised, so they cannot
    // change in between); wasmtime itself checks the version and engine settings recorded
    // in them.
    unsafe { Component::deserialize(engine, precompiled) }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_seal_depends_on_key_name_and_code() {
        let k = [7u8; KEY_LEN];
        let s = seal(&k, "a", b"code");
        assert_eq!(s.len(), 64);
        assert_ne!(s, seal(&[8u8; KEY_LEN], "a", b"code"));
        assert_ne!(s, seal(&k, "b", b"code"));
        assert_ne!(s, seal(&k, "a", b"codf"));
        assert_ne!(seal(&k, "ab", b"c"), seal(&k, "a", b"bc"));
        assert_eq!(unhex(&s).map(|t| t.len()), Some(32));
        assert_eq!(unhex("zz"), None);
    }
}

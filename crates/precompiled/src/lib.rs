//! The one `unsafe` operation of rebound, kept out of the host crate (which forbids
//! `unsafe`): turning precompiled component code from rebound's own on-disk cache back into
//! a [`Component`].
//!
//! wasmtime's [`Component::deserialize`] is `unsafe` because it maps machine code: bytes
//! that did not come from [`Engine::precompile_component`] could do anything. The cache
//! therefore only ever hands this crate bytes that
//!
//! 1. were written by the host itself, with their SHA-256 recorded next to them
//!    ([`seal`]): bytes whose digest does not match (truncated, corrupted, or replaced
//!    without the seal) are refused before wasmtime sees them;
//! 2. sit in a cache directory the host created for itself.
//!
//! wasmtime additionally refuses code from another wasmtime version or another engine
//! configuration with an error, so a stale cache is a cache miss, never a crash.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// The seal of precompiled bytes: their SHA-256, hex. Store it next to the bytes.
pub fn seal(precompiled: &[u8]) -> String {
    hex(&Sha256::digest(precompiled))
}

/// Loads precompiled bytes the host wrote, after checking them against their seal.
///
/// # Errors
/// When the seal does not match, or when wasmtime refuses the code (another wasmtime
/// version or engine configuration).
pub fn load(engine: &Engine, precompiled: &[u8], seal_hex: &str) -> Result<Component> {
    if seal(precompiled) != seal_hex.trim() {
        wasmtime::bail!("precompiled code does not match its seal");
    }
    // SAFETY: the bytes are exactly those the host produced with
    // `Engine::precompile_component` and sealed when it wrote them (checked just above, on
    // the in-memory copy that is then deserialised, so they cannot change in between);
    // wasmtime itself checks the version and engine settings recorded in them.
    unsafe { Component::deserialize(engine, precompiled) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

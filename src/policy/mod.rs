//! The policy chain: an ordered list of sandboxed WebAssembly components, each of which
//! sees the message and the verdict so far and may keep it, replace it, or say the
//! message is not a bounce.

use crate::detector::Detection;
use crate::verdict::Verdict;

/// Errors of the policy chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A module whose `on_error` is `fail` failed: the message must stay unprocessed.
    #[error("policy {module} failed: {message}")]
    Failed {
        /// The module's name.
        module: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An ordered chain of policy modules.
#[derive(Default)]
pub struct PolicyChain {}

impl PolicyChain {
    /// A chain with no modules: the built-in verdict stands.
    pub fn empty() -> PolicyChain {
        PolicyChain {}
    }

    /// Runs the chain over one message and returns the final verdict.
    ///
    /// # Errors
    /// [`Error::Failed`] only when a module configured with `on_error = "fail"` failed.
    pub fn run(&self, raw: &[u8], detection: &Detection) -> Result<Verdict> {
        let _ = raw;
        Ok(detection.verdict.clone())
    }
}

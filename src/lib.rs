//! rebound: a WebAssembly-scriptable bounce engine.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! campaign ──► queue ──► ratelimit ──► smtp ──► (remote MTA)
//!                               │ sync 5xx            │ bounce mail
//!                               ▼                      ▼
//!                           verdict ◄── policy ◄── detector ◄── pop3
//!                               │
//!                               ▼
//!                             store
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod detector;
pub mod verdict;

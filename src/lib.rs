//! rebound: a WebAssembly-scriptable bounce engine.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! campaign ──► queue ──► ratelimit ──► smtp ──► (remote MTA)
//!                               │ sync 5xx            │ bounce mail
//!                               ▼                      ▼
//!                           verdict ◄── policy ◄── detector ◄── pop3 ◄── poller
//!                                                          ◄── imap (IDLE)
//!                               │      (pipeline: detect → policy → correlate → commit)
//!                               ▼
//!                             store ──► reprocess (the archive through the pipeline again)
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod campaign;
pub mod classify;
pub mod config;
pub mod detector;
pub mod dkim;
pub mod imap;
pub mod metrics;
pub mod oauth;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod poller;
pub mod pop3;
pub mod queue;
pub mod ratelimit;
pub mod reprocess;
pub mod smtp;
pub mod store;
pub mod subscribers;
pub mod ui;
pub mod unsubscribe;
pub mod verdict;
pub mod verp;
pub mod webhooks;

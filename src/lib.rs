//! rebound: a WebAssembly-scriptable bounce engine.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! campaign ──► queue ──► ratelimit ──► smtp ──► (remote MTA)
//!                               │ sync 5xx            │ returned mail, provider events
//!                               │                     ▼
//!                               │   sources: pop3 (client + poller) · imap · webhooks
//!                               │            (mailbox: what the mailbox sources share)
//!                               ▼                     │ raw message (a webhook event
//!                           verdict                   ▼  becomes a DSN or ARF report)
//!                               ▲        pipeline: detector → policy → correlate → commit
//!                               │                     │
//!                               └───────────────── store ──► notify (outbox → [[notify]])
//!                                                     └────► reprocess (archive → pipeline)
//! ```
//!
//! Every source hands its messages to [`pipeline`] (the POP3 poller in groups, the IMAP
//! source and the webhooks one at a time through [`pipeline::Stages::ingest`]), so a
//! bounce is judged by the same detector rules and policies however it arrives.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod campaign;
pub mod classify;
pub mod config;
pub mod detector;
pub mod dkim;
pub mod imap;
pub mod mailbox;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod pipeline;
pub mod policy;
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

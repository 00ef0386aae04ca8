//! The store: recipients, bounce events, campaigns and the mailbox ledger (SQLite).

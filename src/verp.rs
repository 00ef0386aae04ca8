//! VERP envelope senders and correlation headers.

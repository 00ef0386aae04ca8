//! The SMTP sender.

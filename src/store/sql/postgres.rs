//! The PostgreSQL dialect: every statement of the store as PostgreSQL runs it.

pub use super::sqlite::*;

//! The admin HTTP API of rebound serve.

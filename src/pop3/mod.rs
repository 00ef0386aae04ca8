//! POP3 client: RFC 1939 with CAPA (RFC 2449) and STLS (RFC 2595) over tokio and rustls.

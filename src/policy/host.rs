//! The host side of the `rebound:policy/host` interface (`log`, `config`), of the
//! `message` handle, for every world version (`0.3.0`, `0.2.0` and `0.1.0` alike: the older
//! functions are the 0.3.0 ones with their types converted), and of the `state` interface
//! (0.3.0: [`super::state`] holds the store behind it); and what each guest instance's
//! `Store` carries: its WASI context (empty), its memory limits, its captured stdio and,
//! during a call, the state session of the run.
//!
//! Guest log lines go to `tracing` with target `rebound::guest` and the field
//! `module = <name>`; they are bounded in length and in number per call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, StateError, v0_1, v0_2, v0_3};
use super::conversions::{MessageData, MessageParts};
use super::state::{MAX_WRITES_PER_CALL, StateLimits, StateSession};

/// Longest guest log line kept, in bytes (longer ones are cut).
pub const MAX_LOG_LINE: usize = 4096;
/// Most guest log lines kept per call (stdio lines included).
pub const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// Most bytes of stdout/stderr kept per call; the rest is dropped.
pub const MAX_STDIO_PER_CALL: usize = 16 * 1024;

/// What one guest instance's `Store` holds.
pub struct GuestState {
    /// The policy's name, for log lines.
    pub(crate) module: Arc<str>,
    /// The policy's `config` table.
    pub(crate) config: Arc<BTreeMap<String, String>>,
    /// Memory caps.
    pub(crate) limits: StoreLimits,
    /// An empty WASI context: no env, no args, no preopens, no network; stdio captured.
    wasi: WasiCtx,
    table: ResourceTable,
    /// Captured stdout + stderr of the current call.
    stdio: StdioSink,
    /// Log lines left in this call.
    log_budget: u32,
    /// The state the current call reads and writes, and what the module may keep there.
    state: Option<(Arc<StateSession>, StateLimits)>,
    /// `state` writes left in this call.
    writes_left: u32,
}

impl GuestState {
    /// A fresh state for one instance of `module`.
    pub(crate) fn new(
        module: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        limits: StoreLimits,
    ) -> GuestState {
        let stdio = StdioSink::default();
        let mut wasi = WasiCtx::builder();
        // No network: linked for other languages' runtimes, refused here (there is no
        // preopened directory either: the builder adds none).
        wasi.stdout(stdio.clone())
            .stderr(stdio.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(super::sandbox::MAX_RESOURCES);
        GuestState {
            module,
            config,
            limits,
            wasi: wasi.build(),
            table,
            stdio,
            log_budget: MAX_LOG_LINES_PER_CALL,
            state: None,
            writes_left: MAX_WRITES_PER_CALL,
        }
    }

    /// Called before each call: fresh budgets, and the state session of the run.
    pub(crate) fn begin_call(&mut self, state: &Arc<StateSession>, limits: StateLimits) {
        self.log_budget = MAX_LOG_LINES_PER_CALL;
        self.writes_left = MAX_WRITES_PER_CALL;
        self.state = Some((state.clone(), limits));
    }

    /// Called after each call (also after a trap): what the guest wrote to stdout/stderr
    /// goes to the log, line by line, within the budget.
    pub(crate) fn end_call(&mut self) {
        self.state = None;
        let captured = self.stdio.take();
        if captured.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&captured);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.emit(Level::Warn, line, "stderr");
        }
    }

    /// The guest's stdout/stderr of the current call so far (for error messages: a panic
    /// message is there).
    pub(crate) fn stdio_tail(&self) -> String {
        let bytes = self.stdio.peek();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        truncate(&tail, 512).to_owned()
    }

    fn emit(&mut self, level: Level, message: &str, source: &'static str) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let message = truncate(message, MAX_LOG_LINE);
        let module = &*self.module;
        if self.log_budget == 0 {
            tracing::warn!(target: "rebound::guest", module, "log limit reached: further lines of this call are dropped");
        }
        match level {
            Level::Debug => tracing::debug!(target: "rebound::guest", module, source, "{message}"),
            Level::Info => tracing::info!(target: "rebound::guest", module, source, "{message}"),
            Level::Warn => tracing::warn!(target: "rebound::guest", module, source, "{message}"),
            Level::Error => tracing::error!(target: "rebound::guest", module, source, "{message}"),
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl v0_3::rebound::policy::host::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        self.emit(level, &message, "log");
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config_entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The host interface of an older world version `$v`: the 0.3.0 one, its level converted.
macro_rules! older_host {
    ($v:ident) => {
        impl $v::rebound::policy::host::Host for GuestState {
            fn log(&mut self, level: $v::rebound::policy::host::Level, message: String) {
                self.emit(level.into(), &message, "log");
            }

            fn config(&mut self, key: String) -> Option<String> {
                v0_3::rebound::policy::host::Host::config(self, key)
            }

            fn config_entries(&mut self) -> Vec<(String, String)> {
                v0_3::rebound::policy::host::Host::config_entries(self)
            }
        }
    };
}

older_host!(v0_2);
older_host!(v0_1);

// The types interfaces: only the `message` resource has functions.
impl v0_3::rebound::policy::types::Host for GuestState {}
impl v0_2::rebound::policy::types::Host for GuestState {}
impl v0_1::rebound::policy::types::Host for GuestState {}

impl GuestState {
    /// The session of the current call (every call has one; a host function called
    /// outside a call is a host bug, which traps).
    fn session(&self) -> wasmtime::Result<(&Arc<StateSession>, StateLimits)> {
        self.state
            .as_ref()
            .map(|(s, l)| (s, *l))
            .ok_or_else(|| wasmtime::format_err!("state used outside a call"))
    }

    /// One write of the call's budget, or `too-many-writes`.
    fn take_write(&mut self) -> Result<(), StateError> {
        if self.writes_left == 0 {
            return Err(StateError::TooManyWrites);
        }
        self.writes_left -= 1;
        Ok(())
    }
}

/// A store failure while reading state: the call traps, so the verdict from before the
/// policy stands (a policy never decides on state it could not read).
fn state_trap(e: String) -> wasmtime::Error {
    wasmtime::format_err!("state: the store failed: {e}")
}

impl v0_3::rebound::policy::state::Host for GuestState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.session()?.0.now_secs())
    }

    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.session()?
            .0
            .get(&self.module, &key)
            .map_err(state_trap)
    }

    fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: u32,
    ) -> wasmtime::Result<Result<(), StateError>> {
        let (session, limits) = self.session()?;
        let session = session.clone();
        if let Err(e) = self.take_write() {
            return Ok(Err(e));
        }
        session
            .set(&self.module, limits, key, value, ttl_seconds)
            .map_err(state_trap)
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), StateError>> {
        let session = self.session()?.0.clone();
        if let Err(e) = self.take_write() {
            return Ok(Err(e));
        }
        session.delete(&self.module, key).map_err(state_trap)
    }
}

type MessageHandle = wasmtime::component::Resource<MessageData>;

impl GuestState {
    /// Makes a handle to `message` for one call.
    pub(crate) fn push_message(
        &mut self,
        message: &Arc<MessageParts>,
    ) -> wasmtime::Result<MessageHandle> {
        Ok(self.table.push(MessageData(message.clone()))?)
    }

    /// Drops the handle after the call.
    pub(crate) fn pop_message(&mut self, handle: MessageHandle) {
        // Deleting can only fail for a handle that is not there any more: nothing to do.
        let _ = self.table.delete(handle);
    }

    fn message(&self, handle: &MessageHandle) -> wasmtime::Result<&MessageParts> {
        Ok(&self.table.get(handle)?.0)
    }
}

/// The `message` handle's functions for the world version `$v`: the message parts are
/// kept as 0.3.0 types, converted (`Into`) for an older version.
macro_rules! host_message {
    ($v:ident) => {
        // For 0.3.0 the `Into`s are the identity.
        #[allow(clippy::useless_conversion)]
        impl $v::rebound::policy::types::HostMessage for GuestState {
            fn raw(&mut self, m: MessageHandle) -> wasmtime::Result<Vec<u8>> {
                Ok(self.message(&m)?.raw.clone())
            }

            fn headers(&mut self, m: MessageHandle) -> wasmtime::Result<String> {
                Ok(self.message(&m)?.headers.clone())
            }

            fn header(
                &mut self,
                m: MessageHandle,
                name: String,
            ) -> wasmtime::Result<Option<String>> {
                let parts = self.message(&m)?;
                Ok(parts
                    .header_list
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.clone()))
            }

            fn subject(&mut self, m: MessageHandle) -> wasmtime::Result<Option<String>> {
                Ok(self.message(&m)?.subject.clone())
            }

            fn from(&mut self, m: MessageHandle) -> wasmtime::Result<Option<String>> {
                Ok(self.message(&m)?.from.clone())
            }

            fn text(&mut self, m: MessageHandle) -> wasmtime::Result<String> {
                Ok(self.message(&m)?.text.clone())
            }

            fn reports(
                &mut self,
                m: MessageHandle,
            ) -> wasmtime::Result<Vec<$v::rebound::policy::types::DeliveryReport>> {
                let reports = &self.message(&m)?.reports;
                Ok(reports.iter().cloned().map(Into::into).collect())
            }

            fn original(
                &mut self,
                m: MessageHandle,
            ) -> wasmtime::Result<Option<$v::rebound::policy::types::OriginalMessage>> {
                Ok(self.message(&m)?.original.clone().map(Into::into))
            }

            fn parser(&mut self, m: MessageHandle) -> wasmtime::Result<Option<String>> {
                Ok(self.message(&m)?.parser.clone())
            }

            fn drop(&mut self, m: MessageHandle) -> wasmtime::Result<()> {
                // The host owns the handle and deletes it after the call; a guest dropping
                // its borrow is not an error.
                let _ = m;
                Ok(())
            }
        }
    };
}

host_message!(v0_3);
host_message!(v0_2);
host_message!(v0_1);

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A bounded in-memory sink for a guest's stdout and stderr: writes past
/// [`MAX_STDIO_PER_CALL`] are accepted and dropped, so a chatty guest neither traps nor
/// grows the host's memory.
#[derive(Clone, Default)]
struct StdioSink {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl StdioSink {
    fn write(&self, bytes: &[u8]) {
        let mut buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_STDIO_PER_CALL.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn peek(&self) -> Vec<u8> {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IsTerminal for StdioSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for StdioSink {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        StdioSink::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StdioSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StdioSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        StdioSink::write(&self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn stdio_sink_keeps_at_most_its_cap_per_call() {
        let sink = StdioSink::default();
        sink.write(&vec![b'x'; MAX_STDIO_PER_CALL + 100]);
        sink.write(b"more");
        assert_eq!(sink.peek().len(), MAX_STDIO_PER_CALL);
        assert_eq!(sink.take().len(), MAX_STDIO_PER_CALL);
        assert!(sink.take().is_empty(), "taken at the end of a call");
    }
}

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use std::borrow::Cow;
use std::cell::OnceCell;

// The generated code names the SDK by its crate name, from inside and outside the crate.
extern crate self as rebound_sdk;

/// wit-bindgen, re-exported for the generated code (guests need not depend on it).
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The generated bindings for `rebound:policy@0.3.0` (the SDK's one bindings macro call).
#[doc(hidden)]
#[allow(unsafe_code, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "rebound_sdk::bindings",
        runtime_path: "rebound_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::rebound::policy::host::Level;
pub use bindings::rebound::policy::types::{
    Blame, BounceClass, Decision, DeliveryReport, MessageKind, OriginalMessage, PolicyError,
    Reason, RecipientVerdict, Verdict,
};

use bindings::rebound::policy::types::Message as MessageHandle;

/// Exports a type that implements [`Policy`] as the component's `evaluate` function.
///
/// Call it once, at the top level of the policy crate: `rebound_sdk::export!(MyPolicy);`.
#[doc(inline)]
pub use bindings::export;

/// A bounce policy: one function from a message and the verdict so far to a [`Decision`].
///
/// Return `Ok(Decision::Keep)` to leave the verdict alone, `Ok(Decision::Replace(v))` to
/// use `v` instead, `Ok(Decision::NotBounce)` to say the message is not a bounce, or
/// `Err(PolicyError::new(..))` for an orderly failure (the verdict from before stands).
pub trait Policy {
    /// Decides what to do with one message. `current` is the verdict so far: the built-in
    /// detector's, or what an earlier policy in the chain made of it.
    fn evaluate(message: &Message, current: Verdict) -> Result<Decision, PolicyError>;
}

impl<T: Policy> bindings::Guest for T {
    fn evaluate(message: &MessageHandle, current: Verdict) -> Result<Decision, PolicyError> {
        <T as Policy>::evaluate(&Message::new(message), current)
    }
}

// ---------------------------------------------------------------------------------------
// Host functions

/// Writes one line to the host's log, tagged with this policy's name.
pub fn log(level: Level, message: &str) {
    bindings::rebound::policy::host::log(level, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// The policy's `config` table, asked from the host once per instance (it cannot change
/// while an instance lives), so reading config costs no host call per message.
fn config_table() -> &'static [(String, String)] {
    static TABLE: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(bindings::rebound::policy::host::config_entries)
}

/// The value the operator set for `key` in this policy's `config` table.
pub fn config(key: &str) -> Option<String> {
    config_table()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Every (key, value) of this policy's `config` table, sorted by key.
pub fn config_entries() -> Vec<(String, String)> {
    config_table().to_vec()
}

/// A comma-separated config value as a list of trimmed, non-empty items
/// (`"a.example, b.example"` → `["a.example", "b.example"]`).
pub fn config_list(key: &str) -> Vec<String> {
    config(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// State

/// The policy's own key-value store, kept by rebound between messages (WIT 0.3.0 `state`).
///
/// Keys are 1 to 256 bytes, values at most `state_max_value` (16 KiB by default); every
/// entry expires (at most 400 days after it was written). What a policy writes while judging
/// a message is committed with that message's verdict, and only when the message is
/// recorded; `rebound policy test` keeps it in memory for the run. There is no clock in
/// the sandbox: [`now`](state::now) is when the message came in.
pub mod state {
    pub use crate::bindings::rebound::policy::state::StateError;
    use crate::bindings::rebound::policy::state as host;

    /// When the message being judged came in, in seconds since the Unix epoch.
    pub fn now() -> u64 {
        host::now()
    }

    /// The value of `key`, unless it was never set, was deleted or has expired.
    pub fn get(key: &str) -> Option<String> {
        host::get(key)
    }

    /// Sets `key` to `value` for `ttl_seconds` from [`now`].
    ///
    /// # Errors
    /// [`StateError`]: the key or value is over its limit, the policy holds its most keys,
    /// or the call made 64 writes already. Nothing was written then.
    pub fn set(key: &str, value: &str, ttl_seconds: u32) -> Result<(), StateError> {
        host::set(key, value, ttl_seconds)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As [`set`].
    pub fn delete(key: &str) -> Result<(), StateError> {
        host::delete(key)
    }

    /// The events kept under `key` by [`record_event`] within the last `window_seconds`
    /// before [`now`]: (time in seconds since the epoch, id), oldest first.
    pub fn events_within(key: &str, window_seconds: u32) -> Vec<(u64, String)> {
        let since = now().saturating_sub(u64::from(window_seconds));
        get(key)
            .unwrap_or_default()
            .split('\n')
            .filter_map(|line| {
                let (time, id) = line.split_once(' ').unwrap_or((line, ""));
                Some((time.parse::<u64>().ok()?, id.to_owned()))
            })
            .filter(|(t, _)| *t > since)
            .collect()
    }

    /// Records one event under `key` at [`now`] and returns how many fall within the last
    /// `window_seconds`, this one included. `id` names the event (say, the Message-ID of
    /// the returned message): an event whose id is already there within the window is the
    /// same event told twice: it is not recorded again, and the count is the one it had
    /// then (so it is judged as it was). An empty id is always new. The entry expires a
    /// window after the latest event; at most the last 64 events are kept.
    ///
    /// # Errors
    /// As [`set`]; nothing was recorded then.
    pub fn record_event(key: &str, id: &str, window_seconds: u32) -> Result<usize, StateError> {
        let id = id.replace(['\n', '\r'], " ");
        let mut events = events_within(key, window_seconds);
        if let Some(k) = events.iter().position(|(_, seen)| !id.is_empty() && *seen == id) {
            return Ok(k + 1);
        }
        events.push((now(), id));
        let keep = events.len().saturating_sub(64);
        let value: Vec<String> = events[keep..]
            .iter()
            .map(|(t, id)| format!("{t} {id}"))
            .collect();
        set(key, &value.join("\n"), window_seconds)?;
        Ok(events.len() - keep)
    }
}

// ---------------------------------------------------------------------------------------
// Text helpers

/// True if `haystack` contains `needle`, ignoring ASCII case.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    find_ignore_case(haystack, needle).is_some()
}

/// The byte offset of the first `needle` in `haystack`, ignoring ASCII case.
pub fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    find_bytes_ignore_case(haystack.as_bytes(), needle.as_bytes())
}

/// The offset of the first `needle` in `haystack` (bytes), ignoring ASCII case.
///
/// Scans for the needle's rarest byte (by English letter frequency; punctuation counts as
/// rare) and compares the whole needle only there, so a search over a long message costs
/// little more than one pass over it.
pub fn find_bytes_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let last = haystack.len().checked_sub(needle.len())?;
    let (k, &pivot) = needle.iter().enumerate().max_by_key(|(_, b)| rarity(**b))?;
    let (lower, upper) = (pivot.to_ascii_lowercase(), pivot.to_ascii_uppercase());
    // Candidate starts are 0..=last, so the pivot byte sits in k..=last + k.
    let window = &haystack[k..=last + k];
    let mut from = 0;
    while from < window.len() {
        let found = find_either(&window[from..], lower, upper)?;
        let start = from + found;
        if haystack[start..start + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// The first position of `a` or `b`, eight bytes at a time (SWAR: a byte of `w ^ a·0x01…`
/// is zero where `w` has `a`; the lowest flagged byte is always exact).
fn find_either(haystack: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (va, vb) = (ONES * u64::from(a), ONES * u64::from(b));
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = zero_bytes(w ^ va) | zero_bytes(w ^ vb);
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|p| offset + p)
}

/// How rare a byte is in mail text: higher is rarer.
fn rarity(b: u8) -> u8 {
    const BY_FREQUENCY: &[u8] = b" etaoinshrdlcumwfgypbvkjxqz";
    match BY_FREQUENCY
        .iter()
        .position(|&c| c == b.to_ascii_lowercase())
    {
        Some(p) => p as u8,
        None if b.is_ascii_digit() => 12,
        None => 30,
    }
}

/// Every e-mail address in `text`, in order of appearance, without duplicates (compared
/// ignoring case). Angle brackets, quotes and `rfc822;` prefixes around them are dropped.
pub fn find_addresses(text: &str) -> Vec<String> {
    fn is_local(c: char) -> bool {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
    }
    fn is_domain(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '-' || c == '.'
    }
    let mut found: Vec<String> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let before = &text[..at];
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_local(*c))
            .last()
            .map(|(i, _)| i);
        let after = &text[at + 1..];
        let end = after.find(|c: char| !is_domain(c)).unwrap_or(after.len());
        let (Some(start), true) = (start, end > 0) else {
            continue;
        };
        let local = before[start..].trim_start_matches(['.', '\'', '`']);
        let domain = after[..end].trim_end_matches(['.', '-']);
        if local.is_empty() || !domain.contains('.') || domain.starts_with(['.', '-']) {
            continue;
        }
        let address = format!("{local}@{}", domain.to_ascii_lowercase());
        if !found.iter().any(|a| a.eq_ignore_ascii_case(&address)) {
            found.push(address);
        }
    }
    found
}

/// The domain of an address (after the last `@`), lower-cased.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// RFC 3463 enhanced status codes and SMTP reply codes.
pub mod status {
    /// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct StatusCode {
        /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
        pub class: u8,
        /// The subject (`1` = addressing, `2` = mailbox, `7` = security/policy, ...).
        pub subject: u16,
        /// The detail within the subject.
        pub detail: u16,
    }

    impl StatusCode {
        /// Parses `5.1.1` (surrounding whitespace allowed). `None` for anything else.
        pub fn parse(s: &str) -> Option<StatusCode> {
            let mut parts = s.trim().splitn(3, '.');
            let class: u8 = parts.next()?.parse().ok()?;
            let subject: u16 = parts.next()?.parse().ok()?;
            let detail: u16 = parts.next()?.parse().ok()?;
            matches!(class, 2 | 4 | 5).then_some(StatusCode {
                class,
                subject,
                detail,
            })
        }

        /// A permanent failure (5.x.x).
        pub fn is_permanent(&self) -> bool {
            self.class == 5
        }

        /// A transient failure (4.x.x).
        pub fn is_transient(&self) -> bool {
            self.class == 4
        }
    }

    impl std::fmt::Display for StatusCode {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
        }
    }

    /// Every enhanced status code in `text`, in order (`"550 5.1.1 <a@b>: unknown"` →
    /// `[5.1.1]`). A code must stand alone: not inside a version number or an IP address.
    pub fn find_all(text: &str) -> Vec<StatusCode> {
        text.split(|c: char| {
            c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ';' | ',' | '<' | '>' | '"')
        })
        .filter_map(|w| StatusCode::parse(w.trim_end_matches([':', '.'])))
        .collect()
    }

    /// The first enhanced status code in `text`.
    pub fn find(text: &str) -> Option<StatusCode> {
        find_all(text).into_iter().next()
    }

    /// The first SMTP reply code (`550`, `452`, ...) that starts a word in `text`.
    pub fn find_reply_code(text: &str) -> Option<u16> {
        text.split(|c: char| c.is_whitespace() || c == ';' || c == '-')
            .filter(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|w| w.parse::<u16>().ok())
            .find(|c| (200..600).contains(c))
    }
}

// ---------------------------------------------------------------------------------------
// Helpers on the WIT types

/// Parses a WIT header block (`Name: value` lines) into (name, value) pairs.
pub fn parse_headers(block: &str) -> impl Iterator<Item = (&str, &str)> {
    block.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name.trim(), value.trim()))
    })
}

fn first_header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    parse_headers(block)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The message being evaluated. Each part is fetched from the host the first time it is
/// asked for and kept for the rest of the call, so a policy pays only for what it reads.
pub struct Message<'a> {
    handle: &'a MessageHandle,
    raw: OnceCell<Vec<u8>>,
    headers: OnceCell<String>,
    subject: OnceCell<Option<String>>,
    from: OnceCell<Option<String>>,
    text: OnceCell<String>,
    reports: OnceCell<Vec<DeliveryReport>>,
    original: OnceCell<Option<OriginalMessage>>,
    parser: OnceCell<Option<String>>,
}

impl<'a> Message<'a> {
    fn new(handle: &'a MessageHandle) -> Message<'a> {
        Message {
            handle,
            raw: OnceCell::new(),
            headers: OnceCell::new(),
            subject: OnceCell::new(),
            from: OnceCell::new(),
            text: OnceCell::new(),
            reports: OnceCell::new(),
            original: OnceCell::new(),
            parser: OnceCell::new(),
        }
    }

    /// The message exactly as fetched from the bounce mailbox.
    pub fn raw(&self) -> &[u8] {
        self.raw.get_or_init(|| self.handle.raw())
    }

    /// The top-level header block: one `Name: value` line per header (see [`Self::headers`]).
    pub fn header_block(&self) -> &str {
        self.headers.get_or_init(|| self.handle.headers())
    }

    /// The decoded `Subject`.
    pub fn subject(&self) -> Option<&str> {
        self.subject
            .get_or_init(|| self.handle.subject())
            .as_deref()
    }

    /// The `From` address.
    pub fn from(&self) -> Option<&str> {
        self.from.get_or_init(|| self.handle.from()).as_deref()
    }

    /// The human-readable text, decoded to UTF-8.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| self.handle.text())
    }

    /// The delivery reports, one per recipient block, in message order.
    pub fn reports(&self) -> &[DeliveryReport] {
        self.reports.get_or_init(|| self.handle.reports())
    }

    /// The returned original message, when attached.
    pub fn original(&self) -> Option<&OriginalMessage> {
        self.original
            .get_or_init(|| self.handle.original())
            .as_ref()
    }

    /// Which part of the built-in detector recognised the message.
    pub fn parser(&self) -> Option<&str> {
        self.parser.get_or_init(|| self.handle.parser()).as_deref()
    }

    /// Every top-level header as (name, value), in message order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        parse_headers(self.header_block())
    }

    /// The first top-level header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(self.header_block(), name)
    }

    /// Every top-level header of that name (case-insensitive), in message order.
    pub fn headers_named<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b str> + 'b {
        parse_headers(self.header_block())
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A header of the returned original message (case-insensitive), when it is attached.
    pub fn original_header(&self, name: &str) -> Option<&str> {
        first_header(&self.original()?.headers, name)
    }

    /// True if the decoded text, the subject or any report's diagnostic contains `needle`
    /// (ignoring ASCII case).
    pub fn contains(&self, needle: &str) -> bool {
        contains_ignore_case(self.text(), needle)
            || self
                .subject()
                .is_some_and(|s| contains_ignore_case(s, needle))
            || self.diagnostics().any(|d| contains_ignore_case(d, needle))
    }

    /// The lines of the decoded text that contain `needle` (ignoring ASCII case), trimmed.
    pub fn lines_containing<'b>(&'b self, needle: &'b str) -> impl Iterator<Item = &'b str> + 'b {
        self.text()
            .lines()
            .filter(move |l| contains_ignore_case(l, needle))
            .map(str::trim)
    }

    /// The raw message as text (invalid UTF-8 replaced).
    pub fn raw_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.raw())
    }

    /// True if the raw message (headers and all parts, undecoded) contains `needle`,
    /// ignoring ASCII case.
    pub fn raw_contains(&self, needle: &str) -> bool {
        !needle.is_empty() && find_bytes_ignore_case(self.raw(), needle.as_bytes()).is_some()
    }

    /// The `Diagnostic-Code` of every delivery report that has one.
    pub fn diagnostics(&self) -> impl Iterator<Item = &str> {
        self.reports()
            .iter()
            .filter_map(|r| r.diagnostic_code.as_deref())
    }

    /// The recipient of every delivery report (final, else original), in order.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.reports().iter().filter_map(|r| {
            r.final_recipient
                .as_deref()
                .or(r.original_recipient.as_deref())
        })
    }
}

impl OriginalMessage {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

impl Verdict {
    /// A bounce verdict for these recipients.
    pub fn bounce(recipients: Vec<RecipientVerdict>) -> Verdict {
        Verdict {
            kind: MessageKind::Bounce,
            recipients,
            decided_by: String::new(),
        }
    }

    /// The recipient with this address (case-insensitive), if the verdict names it.
    pub fn recipient_mut(&mut self, address: &str) -> Option<&mut RecipientVerdict> {
        self.recipients
            .iter_mut()
            .find(|r| r.address.eq_ignore_ascii_case(address))
    }

    /// True if this is a bounce with at least one hard recipient.
    pub fn has_hard(&self) -> bool {
        self.kind == MessageKind::Bounce
            && self
                .recipients
                .iter()
                .any(|r| r.bounce == Some(BounceClass::Hard))
    }

    /// True if this is a bounce with at least one recipient whose failure is blamed on
    /// `blame` (e.g. [`Blame::Sender`]: our IP, domain or content was refused).
    pub fn has_blame(&self, blame: Blame) -> bool {
        self.kind == MessageKind::Bounce && self.recipients.iter().any(|r| r.blame == Some(blame))
    }
}

impl RecipientVerdict {
    /// A recipient with a reason and nothing else; the class is left to the host's rule
    /// unless set with [`hard`](Self::hard) or [`soft`](Self::soft), and the blame to the
    /// host's table (from the reason) unless set with [`with_blame`](Self::with_blame).
    pub fn new(address: &str, reason: Reason) -> RecipientVerdict {
        RecipientVerdict {
            address: address.to_owned(),
            bounce: None,
            status: None,
            reason,
            blame: None,
            diagnostic: None,
            action: None,
            remote_mta: None,
            feedback_type: None,
        }
    }

    /// Sets the enhanced status code (`5.1.1`).
    pub fn with_status(mut self, status: &str) -> RecipientVerdict {
        self.status = Some(status.to_owned());
        self
    }

    /// Sets the diagnostic text (kept short by the host's limits: at most 4096 bytes).
    pub fn with_diagnostic(mut self, diagnostic: &str) -> RecipientVerdict {
        self.diagnostic = Some(diagnostic.chars().take(1000).collect());
        self
    }

    /// Sets the DSN action (`failed`, `delayed`, ...).
    pub fn with_action(mut self, action: &str) -> RecipientVerdict {
        self.action = Some(action.to_owned());
        self
    }

    /// Marks the recipient as a hard bounce.
    pub fn hard(mut self) -> RecipientVerdict {
        self.bounce = Some(BounceClass::Hard);
        self
    }

    /// Marks the recipient as a soft bounce.
    pub fn soft(mut self) -> RecipientVerdict {
        self.bounce = Some(BounceClass::Soft);
        self
    }

    /// Says whom the failure is about, overriding the host's derivation from the reason
    /// (kept only on a failed recipient: one of a bounce).
    pub fn with_blame(mut self, blame: Blame) -> RecipientVerdict {
        self.blame = Some(blame);
        self
    }

    /// Changes the reason of a recipient (say, one of the current verdict) and leaves its
    /// blame to the host again, derived from the new reason: a blame the host derived from
    /// the old reason would otherwise be kept as if the policy had said it.
    pub fn set_reason(&mut self, reason: Reason) {
        self.reason = reason;
        self.blame = None;
    }

    /// True if the failure is blamed on the recipient (its address or mailbox).
    pub fn is_recipient_blamed(&self) -> bool {
        self.blame == Some(Blame::Recipient)
    }

    /// The domain of the address, lower-cased.
    pub fn domain(&self) -> Option<String> {
        domain_of(&self.address)
    }
}

impl PolicyError {
    /// An orderly failure with this message for the operator's log.
    pub fn new(message: impl Into<String>) -> PolicyError {
        PolicyError {
            message: message.into(),
        }
    }
}

impl Blame {
    /// Every blame.
    pub const ALL: [Blame; 4] = [Blame::Recipient, Blame::Sender, Blame::Transit, Blame::Unknown];

    /// The blame with this name ([`as_str`](Self::as_str)), ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Blame> {
        Blame::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The name used in rebound's JSON output and WIT (`recipient`, `sender`, `transit`,
    /// `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Recipient => "recipient",
            Blame::Sender => "sender",
            Blame::Transit => "transit",
            Blame::Unknown => "unknown",
        }
    }
}

impl Reason {
    /// True for reasons that say the address itself will never work (user-unknown,
    /// host-unknown, has-moved, not-accept): with a 5.x.x status the host calls these hard.
    pub fn is_recipient_permanent(self) -> bool {
        matches!(
            self,
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved | Reason::NotAccept
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn addresses_are_found_once_in_order() {
        let t = "550 5.1.1 <Jane.Doe@Example.ORG>: invalid recipient; cc rfc822;bob@x.example. and jane.doe@example.org";
        assert_eq!(
            find_addresses(t),
            vec!["Jane.Doe@example.org", "bob@x.example"]
        );
        assert!(find_addresses("user@localhost and @@ and a@").is_empty());
    }

    #[test]
    fn status_codes_are_found_standing_alone() {
        let codes = status::find_all("550 5.1.1 <a@b.example>: no; version 1.2.3.4 (4.2.2)");
        assert_eq!(
            codes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            vec!["5.1.1", "4.2.2"]
        );
        assert_eq!(status::find_reply_code("smtp; 550-5.1.1 gone"), Some(550));
    }

    #[test]
    fn blames_are_found_by_name() {
        for b in Blame::ALL {
            assert_eq!(Blame::from_name(b.as_str()), Some(b));
        }
        assert_eq!(Blame::from_name(" Sender "), Some(Blame::Sender));
        assert_eq!(Blame::from_name("us"), None);
        let r = RecipientVerdict::new("a@example.org", Reason::Blocked).with_blame(Blame::Transit);
        assert_eq!(r.blame, Some(Blame::Transit));
        let mut r = r;
        r.set_reason(Reason::UserUnknown);
        assert_eq!((r.reason, r.blame), (Reason::UserUnknown, None));
    }

    #[test]
    fn header_blocks_are_parsed_case_insensitively() {
        let block = "From: a@example.net\nSubject: x: y\nsubject: second\n";
        assert_eq!(first_header(block, "SUBJECT"), Some("x: y"));
        assert_eq!(parse_headers(block).count(), 3);
    }

    #[test]
    fn search_ignores_case() {
        assert!(contains_ignore_case(
            "Invalid Recipient",
            "invalid recipient"
        ));
        assert_eq!(find_ignore_case("abc", "C"), Some(2));
        assert!(!contains_ignore_case("ab", "abc"));
        assert_eq!(
            find_bytes_ignore_case(b"xxINVALID Recipient", b"invalid recipient"),
            Some(2)
        );
        assert_eq!(find_bytes_ignore_case(b"iiinvalid", b"invalid"), Some(2));
        assert_eq!(find_bytes_ignore_case(b"abc", b""), Some(0));
        assert_eq!(find_bytes_ignore_case(b"v", b"v"), Some(0));
        assert_eq!(find_bytes_ignore_case(b"vvv invalid", b"invalid"), Some(4));
        assert_eq!(find_bytes_ignore_case(b"invali", b"invalid"), None);
        assert_eq!(find_either(b"0123456789abcdefv", b'v', b'V'), Some(16));
        assert_eq!(find_either(b"012345V7", b'v', b'V'), Some(6));
        assert_eq!(find_either(b"\x01\x00\x01v", b'v', b'V'), Some(3));
        for hay in [
            "",
            "i",
            "inv",
            "an invalid recipient here",
            "INVALID RECIPIENT",
            "invalid recipien",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx Invalid  recipient invalid recipient",
        ] {
            let slow = hay.to_ascii_lowercase().find("invalid recipient");
            assert_eq!(
                find_bytes_ignore_case(hay.as_bytes(), b"invalid recipient"),
                slow,
                "{hay}"
            );
        }
    }
}

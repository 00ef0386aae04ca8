//! Non-standard bounces: the plain-text formats of Postfix, Sendmail, Exim, qmail,
//! Exchange/Office 365, Gmail, Yahoo and the rest. In: the parsed message and the
//! bounce text (the human-readable part, cut before the returned original). Out: each
//! failed recipient with the lines that describe it.
//!
//! There are no per-MTA parsers here, only the rules a careful reader follows:
//!
//! 1. A message is a bounce when at least two of these hold: it comes from a mailer
//!    daemon or postmaster (or has an empty return path); its subject reads like a
//!    delivery failure; its text says a message could not be delivered; it carries
//!    `X-Failed-Recipients`.
//! 2. The failed recipients are the addresses the bounce text *presents*: alone on a
//!    line, at the start of a line followed by `:` or `...`, in `<…>` after "RCPT TO",
//!    after "recipient"/"address"/"to" in a sentence about delivery, or in
//!    `X-Failed-Recipients`. The sender's own addresses (the bounce's To and Return-Path,
//!    the original's From, Sender and Return-Path) are never recipients.
//! 3. What follows an address, up to the next recipient, is its diagnostic.
//! 4. With no address in the text, the original message's single `To` is the recipient
//!    (not when the original was a mailing-list post: its `To` is the list).
//!
//! Never a recipient: the bounce's own addressee and sender, the returned message's
//! sender-side and `List-*` headers, any Message-ID, addresses after `MAIL FROM`, a
//! list's administrative addresses, and an address inside another recipient's
//! diagnostic (reported as that recipient's alias).

use once_cell::sync::Lazy;
use regex::Regex;

use super::mime::Mail;
use super::original;

/// A compiled literal pattern. A pattern that failed to compile (ruled out by the unit
/// tests) matches nothing instead of panicking.
pub(crate) struct Pattern(Option<Regex>);

impl Pattern {
    pub(crate) fn new(p: &str) -> Pattern {
        Pattern(Regex::new(p).ok())
    }
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.0.as_ref().is_some_and(|r| r.is_match(text))
    }
    pub(crate) fn find_iter<'t>(&self, text: &'t str) -> Vec<regex::Match<'t>> {
        self.0
            .as_ref()
            .map(|r| r.find_iter(text).collect())
            .unwrap_or_default()
    }
    #[cfg(test)]
    fn compiled(&self) -> bool {
        self.0.is_some()
    }
}

/// A set of literal phrases matched ASCII-case-insensitively in one pass (Aho-Corasick):
/// cheaper to build and to search than the same alternation as a regex. A set that failed
/// to build (ruled out by the unit tests) matches nothing instead of panicking.
pub(crate) struct Literals(Option<aho_corasick::AhoCorasick>);

impl Literals {
    /// A set searched often, over long texts: the builder's choice (a DFA for a set this
    /// small), the fastest search.
    pub(crate) fn new(phrases: &[&str]) -> Literals {
        Self::build(phrases, None)
    }
    /// A set searched once per message over a short head: a contiguous NFA, which
    /// searches a little slower than a DFA but is a fraction of its build time (the
    /// DFAs' builds were a tenth of a one-shot `rebound classify`).
    pub(crate) fn quick_to_build(phrases: &[&str]) -> Literals {
        Self::build(phrases, Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
    }
    fn build(phrases: &[&str], kind: Option<aho_corasick::AhoCorasickKind>) -> Literals {
        Literals(
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .kind(kind)
                .build(phrases)
                .ok(),
        )
    }
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.0.as_ref().is_some_and(|a| a.is_match(text))
    }
    /// Every (start, end) of a match, leftmost first, not overlapping, as they are found.
    pub(crate) fn find_iter<'a>(
        &'a self,
        text: &'a str,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.0
            .iter()
            .flat_map(move |a| a.find_iter(text).map(|m| (m.start(), m.end())))
    }
    #[cfg(test)]
    fn built(&self) -> bool {
        self.0.is_some()
    }
}

/// Builds this module's patterns ([`super::warm_up`]).
pub(crate) fn warm_up() {
    for p in [&ADDRESS, &INTRO_BEFORE] {
        Lazy::force(p);
    }
    for l in [&BOUNCE_SUBJECT, &BOUNCE_BODY] {
        Lazy::force(l);
    }
}

static ADDRESS: Lazy<Pattern> = Lazy::new(|| {
    Pattern::new(
        r"(?i-u)[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    )
});

static BOUNCE_SUBJECT: Lazy<Literals> = Lazy::new(|| {
    Literals::quick_to_build(&[
        "undeliver",
        "undelivered",
        "delivery status notification",
        "delivery failure",
        "delivery failed",
        "delivery has failed",
        "delivery problem",
        "delivery report",
        "delivery notification",
        "delivery error",
        "returned mail",
        "returned to sender",
        "mail delivery failed",
        "failure notice",
        "could not be delivered",
        "not delivered",
        "non-delivery",
        "non delivery",
        "nondelivery",
        "nondeliverable",
        "mail system error",
        "unable to deliver",
        "delivery status",
        "mail could not",
        "permanent error",
        "failed delivery",
        "warning: could not send",
        "delivery unsuccessful",
        "message delivery",
        "rejected",
        "bounce",
        "fail",
        "error",
        "unzustellbar",
        "zustellung",
        "non remis",
        "不達",
        "エラー",
        "配信",
        "送信できません",
        "未送達",
    ])
});

static BOUNCE_BODY: Lazy<Literals> = Lazy::new(|| {
    Literals::quick_to_build(&[
        "could not be delivered",
        "couldn't be delivered",
        "not be delivered",
        "was not delivered",
        "wasn't delivered",
        "undeliverable",
        "permanent error",
        "permanent failure",
        "failed permanently",
        "delivery has failed",
        "delivery failed",
        "delivery to the following",
        "following address failed",
        "following addresses failed",
        "following recipient failed",
        "following recipients failed",
        "unable to deliver",
        "could not deliver",
        "couldn't deliver",
        "was unable to deliver",
        "delivery problem",
        "i'm sorry to have to inform you",
        "i'm afraid i wasn't able",
        "message was rejected",
        "was rejected",
        "has been rejected",
        "returned to you",
        "user unknown",
        "delivery error",
        "failed to deliver",
        "giving up",
        "not deliverable",
        "non-delivery",
        "delivery of your message",
        "transcript of session",
        "unrouteable",
        "mailbox full",
        "no such user",
        "message could not",
        "rejected your message",
        "error occurred while trying to deliver",
        "delivery status notification",
        "your message did not reach",
        "your message couldn't",
        "message not delivered",
        "delivery attempts",
        "returned message",
    ])
});

static INTRO_BEFORE: Lazy<Pattern> = Lazy::new(|| {
    Pattern::new(
        r"(?i-u)(recipient|address|addressee|rcpt to|rcpt|to|for|user|mailbox|account|destinataire|empfänger)\s*(\(es\)|\(s\)|s)?\s*[:=]?\s*[<\[(]?\s*$",
    )
});

/// Every address in `text`, lower-cased, in order, without duplicates.
pub(crate) fn addresses(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Most header values and lines hold no address at all.
    if !text.contains('@') {
        return out;
    }
    let mut seen = std::collections::HashSet::new();
    for m in ADDRESS.find_iter(text) {
        let a = clean(m.as_str());
        if !a.is_empty() && seen.insert(a.clone()) {
            out.push(a);
            if out.len() >= MAX_CANDIDATES {
                break;
            }
        }
    }
    out
}

/// At most this many distinct addresses are considered in one text: a report names a
/// handful, and a hostile message must not make the search quadratic.
const MAX_CANDIDATES: usize = 1000;

fn clean(a: &str) -> String {
    let a = a.trim_matches(|c: char| c == '.' || c == '\'' || c == '`' || c == '=' || c == '-');
    // Quoted-printable soft breaks and mailto: prefixes.
    let a = a.strip_prefix("mailto:").unwrap_or(a);
    a.to_lowercase()
}

/// Local parts that belong to mail systems, not to people: daemons and role accounts,
/// and a mailing list's own administrative addresses (`LIST-request`, RFC 2142 §6;
/// `owner-LIST` and `LIST-owner`, the list manager conventions; `LIST-bounces`, where a
/// list manager takes its returned mail).
fn is_system_address(a: &str) -> bool {
    let local = a.split('@').next().unwrap_or("");
    let local = local.split('+').next().unwrap_or(local);
    if local.ends_with("-request")
        || local.ends_with("-owner")
        || local.starts_with("owner-")
        || local.ends_with("-bounces")
    {
        return true;
    }
    matches!(
        local,
        "mailer-daemon"
            | "mailer_daemon"
            | "maildaemon"
            | "mailerdaemon"
            | "mail-daemon"
            | "postmaster"
            | "post_master"
            | "mdaemon"
            | "daemon"
            | "root"
            | "nobody"
            | "noreply"
            | "no-reply"
            | "abuse"
    )
}

/// True when the sender is a mail system.
pub(crate) fn from_mail_system(mail: &Mail) -> bool {
    let from = mail.from.as_deref().unwrap_or("");
    let raw_from = mail.header("from").unwrap_or("").to_ascii_lowercase();
    from.is_empty()
        || is_system_address(from)
        || raw_from.contains("mailer-daemon")
        || raw_from.contains("mail delivery")
        || raw_from.contains("postmaster")
        || raw_from.contains("mail administrator")
        || mail.header("return-path").is_some_and(|r| r.trim() == "<>")
}

/// True when the message reads as a delivery failure (rule 1).
pub(crate) fn is_bounce(mail: &Mail, bounce_text: &str) -> bool {
    if mail.header("x-failed-recipients").is_some() {
        return true;
    }
    let subject = mail.subject.as_deref().unwrap_or("");
    let head = bounce_text
        .get(..floor_char(bounce_text, 16 * 1024))
        .unwrap_or(bounce_text);
    let score = [
        from_mail_system(mail),
        BOUNCE_SUBJECT.is_match(subject),
        BOUNCE_BODY.is_match(head),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    score >= 2
}

fn floor_char(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// One failed recipient found in the text.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The address, lower-case.
    pub address: String,
    /// The text that describes its failure (from its line to the next recipient).
    pub block: String,
}

/// Addresses that are never failed recipients: the bounce's own addressee and sender
/// (the bounce is addressed to us), the returned message's sender-side and list headers
/// (From, Sender, Return-Path, Reply-To, Errors-To, List-*: a list's posting address is
/// not a subscriber), and every Message-ID the messages carry (`<id@host>` reads like an
/// address).
pub(crate) fn sender_addresses(mail: &Mail) -> &[String] {
    mail.senders.get_or_init(|| read_sender_addresses(mail))
}

fn read_sender_addresses(mail: &Mail) -> Vec<String> {
    let mut out = Vec::new();
    for name in [
        "to",
        "return-path",
        "message-id",
        "in-reply-to",
        "references",
    ] {
        for v in mail.headers_named(name) {
            out.extend(addresses(v));
        }
    }
    if let Some(from) = &mail.from {
        out.push(from.clone());
    }
    if let Some(o) = &mail.original {
        const SENDER_SIDE: [&str; 8] = [
            "from",
            "sender",
            "return-path",
            "reply-to",
            "errors-to",
            "message-id",
            "in-reply-to",
            "references",
        ];
        for (name, v) in &o.headers {
            let list = name
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("list-"));
            if list || SENDER_SIDE.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                out.extend(addresses(v));
            }
        }
        if let Some(id) = &o.message_id {
            out.push(id.to_lowercase());
        }
    }
    out
}

/// A returned message's header line whose addresses are about the sender or the list,
/// never a failed recipient: `From:`, `Sender:`, `Reply-To:`, `Message-ID:`, `List-Post:`, ….
fn is_sender_header_line(line: &str) -> bool {
    let Some((name, _)) = line.split_once(':') else {
        return false;
    };
    if name.is_empty() || name.contains(' ') {
        return false;
    }
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "from"
            | "sender"
            | "reply-to"
            | "return-path"
            | "errors-to"
            | "message-id"
            | "in-reply-to"
            | "references"
            | "resent-from"
            | "resent-sender"
    ) || n.starts_with("list-")
}

/// The failed recipients in `text` (rules 2–4).
pub(crate) fn recipients(mail: &Mail, text: &str) -> Vec<Found> {
    let exclude = sender_addresses(mail);
    let lines: Vec<&str> = text.lines().collect();
    // (line index, address)
    let mut strong: Vec<(usize, String)> = Vec::new();
    let mut weak: Vec<(usize, String)> = Vec::new();
    let (mut seen_strong, mut seen_weak) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    'scan: for (i, line) in lines.iter().enumerate() {
        if is_sender_header_line(line.trim_start()) {
            continue;
        }
        // The first address this line presents; what follows its reply code is its
        // diagnostic, and an address there is an alias of it (see [`aliases_in`]).
        let mut presented: Option<(String, usize)> = None;
        for m in ADDRESS.find_iter(line) {
            let addr = clean(m.as_str());
            if addr.is_empty() || exclude.contains(&addr) {
                continue;
            }
            let before = line.get(..m.start()).unwrap_or("");
            let after = line.get(m.end()..).unwrap_or("");
            if before.to_ascii_lowercase().contains("mail from") {
                continue;
            }
            if let Some((first, end)) = &presented
                && *first != addr
                && line
                    .get(*end..m.start())
                    .is_some_and(|between| super::status::find_reply_code(between).is_some())
            {
                continue;
            }
            let strong_here = is_presented(before, after);
            if strong_here && presented.is_none() {
                presented = Some((addr.clone(), m.end()));
            }
            let (list, seen) = if strong_here {
                (&mut strong, &mut seen_strong)
            } else {
                (&mut weak, &mut seen_weak)
            };
            if seen.insert(addr.clone()) {
                list.push((i, addr));
            }
            if strong.len() + weak.len() >= MAX_CANDIDATES {
                break 'scan;
            }
        }
    }
    // The sender's own addresses, when the text presents nothing else.
    let mut strong_excluded: Vec<(usize, String)> = Vec::new();
    if strong.is_empty() {
        for (i, line) in lines.iter().enumerate() {
            for m in ADDRESS.find_iter(line) {
                let addr = clean(m.as_str());
                let before = line.get(..m.start()).unwrap_or("");
                let after = line.get(m.end()..).unwrap_or("");
                if exclude.contains(&addr)
                    && is_presented(before, after)
                    && !strong_excluded.iter().any(|(_, a)| *a == addr)
                {
                    strong_excluded.push((i, addr));
                }
            }
        }
    }
    let mut chosen: Vec<(usize, String)> = Vec::new();
    if let Some(failed) = mail.header("x-failed-recipients") {
        for a in addresses(failed) {
            let line = strong
                .iter()
                .chain(weak.iter())
                .find(|(_, s)| *s == a)
                .map(|(i, _)| *i)
                .unwrap_or(0);
            chosen.push((line, a));
        }
    }
    if chosen.is_empty() {
        chosen = if !strong.is_empty() {
            strong
        } else if !strong_excluded.is_empty() {
            strong_excluded
        } else {
            weak.into_iter()
                .filter(|(_, a)| !is_system_address(a))
                .collect()
        };
    }
    // Rule 4, except for a post to a mailing list: its To is the list, not a subscriber.
    let list_post = mail.original.as_ref().is_some_and(|o| {
        o.headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with("list-"))
            || o.header("precedence")
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("list"))
    });
    if chosen.is_empty()
        && !list_post
        && let Some(to) = mail.original.as_ref().and_then(|o| o.header("to"))
    {
        let tos: Vec<String> = addresses(to)
            .into_iter()
            .filter(|a| !exclude.contains(a))
            .collect();
        if tos.len() == 1 {
            chosen = tos.into_iter().map(|a| (0usize, a)).collect();
        }
    }
    chosen.sort_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (k, (line, addr)) in chosen.iter().enumerate() {
        let mut next_line = chosen
            .get(k + 1)
            .map(|(l, _)| *l)
            .filter(|l| *l > *line)
            .unwrap_or(lines.len());
        // A line naming another failed recipient ends this one's block (a bounce that
        // repeats its list in a second language names them all again).
        if chosen.len() > 1
            && let Some(j) = (*line + 1..next_line).find(|j| {
                let l = lines[*j].to_ascii_lowercase();
                chosen
                    .iter()
                    .any(|(_, other)| other != addr && l.contains(other.as_str()))
            })
        {
            next_line = j;
        }
        // A transcript line ("554 <a@example.com>... reason") is its own diagnostic,
        // with its indented continuation lines; the lines after it are about others.
        let first = lines.get(*line).copied().unwrap_or("");
        if first
            .trim_start()
            .get(..3)
            .is_some_and(|c| super::status::find_reply_code(c).is_some())
            && first.contains("...")
        {
            let mut end = *line + 1;
            while end < next_line && lines.get(end).is_some_and(|l| l.starts_with([' ', '\t'])) {
                end += 1;
            }
            next_line = end;
        }
        let block = lines
            .get(*line..next_line)
            .map(|ls| ls.join("\n"))
            .unwrap_or_default();
        out.push(Found {
            address: addr.clone(),
            block,
        });
    }
    out
}

/// Rule 2: does the line present this address as a recipient?
fn is_presented(before: &str, after: &str) -> bool {
    let b = before.trim();
    let b_core = b.trim_end_matches(['<', '"', '\'', '(', '[', '*', ' ']);
    let a = after.trim_start_matches(['>', '"', '\'', ')', ']']);
    let a_trim = a.trim();
    // Alone on the line, or leading the line.
    let leading = b_core.is_empty()
        || b_core.chars().all(|c| {
            matches!(c, '-' | '*' | '#' | '•' | '>' | ':' | '.' | ' ') || c.is_ascii_digit()
        });
    if leading {
        return a_trim.is_empty()
            || a_trim.starts_with(':')
            || a_trim.starts_with("...")
            || a_trim.starts_with(',')
            || a_trim.starts_with(';')
            || a_trim.starts_with('(')
            || a_trim.starts_with('[')
            || a_trim.starts_with("<")
            || a_trim.starts_with("- ")
            || a_trim.to_ascii_lowercase().starts_with("on ")
            || a_trim.to_ascii_lowercase().starts_with("(generated")
            || a.starts_with(' ') && !b.is_empty();
    }
    if a_trim.starts_with("...") {
        return true;
    }
    let lower = b.to_ascii_lowercase();
    if lower.ends_with("rcpt to:<") || lower.ends_with("rcpt to: <") || lower.ends_with("rcpt to:")
    {
        return true;
    }
    let introduced = INTRO_BEFORE.is_match(&lower)
        || (lower.contains("recipient") || lower.contains("address") || lower.contains("deliver"))
            && (lower.ends_with(':')
                || lower.ends_with('<')
                || lower.ends_with(" to")
                || lower.ends_with("to <"));
    introduced
        && !lower.ends_with("from")
        && !lower.ends_with("reply-to:")
        && !lower.contains("mail from")
}

/// The addresses inside one recipient's diagnostic, after the remote server's reply code
/// (`host said: 550 5.2.1 <b@example.net>... Addressee unknown` about `a@example.net`):
/// the server's name for that recipient (a forwarding target, an alias it rewrote to),
/// reported with it and never a recipient of its own. `exclude`: the report's own
/// recipients and the sender's addresses.
pub(crate) fn aliases_in(diagnostic: &str, address: &str, exclude: &[String]) -> Vec<String> {
    // Where the server's reply starts: the first standalone three-digit 4xx/5xx code.
    let Some(start) = diagnostic
        .match_indices(['4', '5'])
        .map(|(i, _)| i)
        .find(|&i| {
            let b = diagnostic.as_bytes();
            b.get(i + 1..i + 3)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                && b.get(i + 3)
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'.')
                && (i == 0
                    || b.get(i - 1)
                        .is_some_and(|c| !c.is_ascii_alphanumeric() && *c != b'.'))
        })
    else {
        return Vec::new();
    };
    let tail = diagnostic.get(start..).unwrap_or("").to_ascii_lowercase();
    let own = address.to_ascii_lowercase();
    // Most answers name only the recipient itself: then there is nothing to scan for.
    if tail.matches('@').count() <= tail.matches(own.as_str()).count() {
        return Vec::new();
    }
    addresses(&tail)
        .into_iter()
        .filter(|a| *a != own && !exclude.contains(a) && !is_system_address(a))
        .collect()
}

/// The part of `text` that describes `address`: from its first mention to the next blank
/// line pair or the next address line. Used to give a DSN recipient the human-readable
/// explanation when its report has no `Diagnostic-Code`.
pub(crate) fn block_for(text: &str, lower: &str, address: &str) -> Option<String> {
    if !lower.contains(address) {
        return None;
    }
    // Byte offsets of `lower` and `text` agree only for ASCII; find on the line level.
    // Only the block's lines are kept: from the first that names the address, at most 13.
    let start = lower.lines().position(|l| l.contains(address))?;
    let lines: Vec<&str> = text.lines().skip(start).take(13).collect();
    let lower_lines: Vec<&str> = lower.lines().skip(start).take(13).collect();
    let mut end = 1;
    let mut blank = 0;
    while let Some(l) = lines.get(end) {
        if l.trim().is_empty() {
            blank += 1;
            if blank >= 2 {
                break;
            }
        } else {
            blank = 0;
            // Another recipient's line ends this one's block.
            if ADDRESS
                .find_iter(l)
                .iter()
                .any(|m| clean(m.as_str()) != address)
                && lower_lines.get(end).is_some_and(|x| !x.contains(address))
            {
                break;
            }
        }
        end += 1;
        if end > 12 {
            break;
        }
    }
    lines.get(..end).map(|ls| ls.join("\n"))
}

/// `text` up to the end of the first line that names `address` (any case): the part of a
/// bounce that may explain the failure before presenting the address.
pub(crate) fn text_through<'t>(text: &'t str, address: &str) -> Option<&'t str> {
    if address.is_empty() || !address.is_ascii() {
        return None;
    }
    let needle = address.to_ascii_lowercase();
    let mut end = 0usize;
    for line in text.split_inclusive('\n') {
        end += line.len();
        if line.to_ascii_lowercase().contains(&needle) {
            return text.get(..end);
        }
    }
    None
}

/// The bounce text: the human-readable text cut before the returned original message.
pub(crate) fn bounce_text(text: &str) -> &str {
    match original::split_point(text) {
        Some((cut, _)) => text.get(..cut).unwrap_or(text),
        None => text,
    }
}

/// The lines of a block worth showing as the diagnostic: those with a reply or status
/// code, else the first few non-empty lines after the address line.
pub(crate) fn diagnostic_lines(block: &str, address: &str) -> Option<String> {
    let mut picked: Vec<&str> = Vec::new();
    for line in block.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if super::status::find_reply_code(t).is_some() || super::status::find_enhanced(t).is_some()
        {
            picked.push(t);
        }
    }
    if picked.is_empty() {
        for line in block.lines() {
            let t = line.trim();
            if t.is_empty()
                || t.to_lowercase()
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    == address
            {
                continue;
            }
            picked.push(t);
            if picked.len() >= 3 {
                break;
            }
        }
    }
    if picked.is_empty() {
        return None;
    }
    let mut d = picked.join(" ");
    if d.len() > 1000 {
        let end = floor_char(&d, 1000);
        d.truncate(end);
    }
    Some(d)
}

/// Whether the text says the failure is permanent (`Some(true)`), temporary
/// (`Some(false)`) or neither.
pub(crate) fn permanence(text: &str) -> Option<bool> {
    let l = text.to_lowercase();
    let permanent = [
        "permanent error",
        "permanent failure",
        "failed permanently",
        "permanently",
        "fatal error",
        "this is a permanent",
        "has been rejected",
        "were rejected",
        "was rejected",
        "could not be delivered",
        "undeliverable",
        "following address(es) failed",
        "failed:",
    ];
    let temporary = [
        "temporary",
        "will keep trying",
        "will be retried",
        "still trying",
        "delayed",
        "will continue",
        "warning: could not",
        "has not yet been delivered",
        "not yet been delivered",
        "will retry",
    ];
    if temporary.iter().any(|p| l.contains(p)) {
        return Some(false);
    }
    if permanent.iter().any(|p| l.contains(p)) {
        return Some(true);
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn patterns_compile() {
        for p in [&*ADDRESS, &*INTRO_BEFORE] {
            assert!(p.compiled());
        }
        assert!(BOUNCE_SUBJECT.built() && BOUNCE_BODY.built());
        assert!(BOUNCE_SUBJECT.is_match("Undeliverable: news"));
        assert!(BOUNCE_BODY.is_match("The following addresses FAILED:"));
    }

    #[test]
    fn text_through_ends_at_the_address_line() {
        let t = "Failure Reasons\nUser not listed\nA@Example.com\nmore\n";
        assert_eq!(
            text_through(t, "a@example.com"),
            Some("Failure Reasons\nUser not listed\nA@Example.com\n")
        );
        assert_eq!(text_through(t, "b@example.com"), None);
        assert_eq!(text_through(t, ""), None);
    }

    #[test]
    fn addresses_are_found_and_cleaned() {
        assert_eq!(
            addresses("to <A@Example.COM>, b@example.net."),
            vec!["a@example.com", "b@example.net"]
        );
    }

    #[test]
    fn is_presented_reads_layouts() {
        assert!(is_presented("  ", ""));
        assert!(is_presented("<", ">:"));
        assert!(is_presented("", "... User unknown"));
        assert!(is_presented("RCPT TO:<", ">"));
        assert!(is_presented("Original-Recipient: ", ""));
        assert!(!is_presented("please contact ", " for help"));
    }
}

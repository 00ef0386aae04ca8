//! The original message a bounce returns: attached as `message/rfc822`, as
//! `text/rfc822-headers`, or pasted into the text after a marker line. In: the attached
//! message or the text; out: an [`OriginalMessage`] with its Message-ID and headers.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{Header, HeaderName, HeaderValue, Message};

use super::OriginalMessage;

/// At most this many headers are kept.
const MAX_HEADERS: usize = 200;

/// Header names that start the original message when it is pasted into text.
const START_HEADERS: &[&str] = &[
    "return-path",
    "received",
    "message-id",
    "from",
    "to",
    "subject",
    "date",
    "dkim-signature",
    "mime-version",
    "x-received",
    "delivered-to",
    "reply-to",
    "content-type",
    "sender",
    "arc-seal",
    "authentication-results",
    "x-mailer",
    "references",
    "in-reply-to",
    "cc",
    "x-rebound-campaign",
    "x-rebound-recipient",
];

/// From an attached (parsed) message.
pub(crate) fn from_message(m: &Message<'_>) -> OriginalMessage {
    let raw: &[u8] = m.raw_message.as_ref();
    let headers: Vec<(String, String)> = m
        .parts
        .first()
        .map(|p| {
            p.headers
                .iter()
                .take(MAX_HEADERS)
                .map(|h| (h.name().to_owned(), header_text(raw, h)))
                .collect()
        })
        .unwrap_or_default();
    finish(headers)
}

/// The decoded text of a header: text values as decoded, everything else (the parser
/// skips most headers, see `mime::PARSER`) as the unfolded raw value (addresses keep
/// their exact form, e.g. a VERP address).
pub(crate) fn header_text(raw: &[u8], h: &Header<'_>) -> String {
    match h.value() {
        HeaderValue::Text(t) => return t.trim().to_owned(),
        HeaderValue::TextList(list) => return list.join(", "),
        // Skipped by the parser (`mime::PARSER`), read as the parser that decodes reads it.
        HeaderValue::Empty if h.name == HeaderName::ContentTransferEncoding => {
            if let Some(t) = transfer_encoding_value(raw, h) {
                return t.trim().to_owned();
            }
        }
        _ => {}
    }
    let start = h.offset_start() as usize;
    let end = h.offset_end() as usize;
    let bytes = raw.get(start..end).unwrap_or_default();
    // Nearly every header is valid UTF-8 (mostly ASCII), which `from_utf8` checks faster
    // than the lossy conversion does.
    let value = match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    unfold(&value)
}

/// A `Content-Transfer-Encoding` value as unstructured text, whether the parser read it
/// or skipped it (then it is read from the raw bytes, with the parser's own reader, from
/// where the value starts).
pub(crate) fn transfer_encoding_value<'a>(
    raw: &'a [u8],
    h: &'a Header<'_>,
) -> Option<Cow<'a, str>> {
    match h.value() {
        HeaderValue::Text(t) => Some(Cow::Borrowed(t.as_ref())),
        HeaderValue::Empty => {
            let rest = raw.get(h.offset_start() as usize..)?;
            match MessageStream::new(rest).parse_unstructured() {
                HeaderValue::Text(t) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Joins folded lines and trims.
pub(crate) fn unfold(value: &str) -> String {
    // Byte by byte: the blanks trimmed are ASCII, so every cut is a character boundary.
    let blank = |b: &u8| matches!(b, b'\r' | b' ' | b'\t');
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut start = 0usize;
    while start <= bytes.len() {
        let end = bytes
            .get(start..)
            .and_then(|r| memchr::memchr(b'\n', r))
            .map_or(bytes.len(), |p| start + p);
        let line = bytes.get(start..end).unwrap_or_default();
        if let (Some(a), Some(z)) = (
            line.iter().position(|b| !blank(b)),
            line.iter().rposition(|b| !blank(b)),
        ) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(value.get(start + a..start + z + 1).unwrap_or_default());
        }
        start = end + 1;
    }
    out
}

/// From a block of header lines (`text/rfc822-headers`, or the text after a marker).
/// Reads until the first blank line after at least one header; `None` when no header.
pub(crate) fn from_header_text(text: &str) -> Option<OriginalMessage> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut started = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            if started {
                break;
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_header_name(name) => {
                started = true;
                if headers.len() < MAX_HEADERS {
                    headers.push((name.to_owned(), value.trim().to_owned()));
                }
            }
            // mbox "From " lines and separators before the block are skipped.
            _ if !started => continue,
            _ => break,
        }
    }
    if headers.is_empty() {
        return None;
    }
    Some(finish(headers))
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn finish(headers: Vec<(String, String)>) -> OriginalMessage {
    let message_id = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("message-id"))
        .map(|(_, v)| clean_message_id(v))
        .filter(|v| !v.is_empty());
    OriginalMessage {
        message_id,
        headers,
    }
}

/// `<abc@example.com>` → `abc@example.com`.
pub(crate) fn clean_message_id(v: &str) -> String {
    let v = v.trim();
    let v = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or(v),
        _ => v,
    };
    v.trim().to_owned()
}

/// Where, in a bounce's text, the returned original message starts: the byte offset of
/// the marker line (or of the first header line when there is no marker), and the
/// offset where its headers begin. `None` when the text does not include it.
pub(crate) fn split_point(text: &str) -> Option<(usize, usize)> {
    // 1. A marker line. The marker words are found in one pass over the text; only the
    //    lines that hold one are looked at.
    for (start, end) in MARKER_SET.find_iter(text) {
        let line_start = text
            .get(..start)
            .and_then(|t| t.rfind('\n'))
            .map(|p| p + 1)
            .unwrap_or(0);
        let line_end = text
            .get(end..)
            .and_then(|t| t.find('\n'))
            .map(|p| end + p)
            .unwrap_or(text.len());
        if is_marker(text.get(line_start..line_end).unwrap_or("")) {
            return Some((line_start, (line_end + 1).min(text.len())));
        }
    }
    // 2. A run of header lines starting with a well-known header, after a blank line or a
    //    separator.
    let mut offset = 0usize;
    let mut prev: &str = "";
    for line in text.split('\n') {
        let here = offset;
        offset += line.len() + 1;
        let paragraph_start =
            prev.trim().is_empty() || prev.trim_start().starts_with(['-', '=', '*', '_', '#']);
        prev = line;
        if !paragraph_start
            || !line.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            || !is_start_header(line)
        {
            continue;
        }
        let mut count = 1;
        let mut strong = is_strong_header(line);
        for l in text
            .get(offset.min(text.len())..)
            .unwrap_or("")
            .split('\n')
            .take(8)
        {
            if l.starts_with([' ', '\t']) {
                continue;
            }
            if is_start_header(l) {
                count += 1;
                strong |= is_strong_header(l);
            } else {
                break;
            }
        }
        // "Subject: …" and "Date: …" quoted in a sentence are not a header block.
        if count >= 2 && strong {
            return Some((here, here));
        }
    }
    None
}

/// Words of a marker line (see [`is_marker`]).
const MARKER_WORDS: &[&str] = &[
    "original message",
    "copy of the message",
    "copy of your message",
    "unsent message",
    "returned message",
    "message headers follow",
    "header of the original",
    "headers of the original",
    "undelivered message",
    "original mail",
    "original e-mail",
    "rfc822",
    "message text follows",
    "below this line is a copy",
    "the message follows",
    "original headers",
    "message header follows",
    "original message header",
    "bounced e-mail",
    "copy of message",
    "headers follow",
    "returned mail follows",
    "text of the message",
    "content of the message",
    "message content follows",
    "your message follows",
];

/// Builds the marker set ([`super::warm_up`]).
pub(crate) fn warm_up() {
    once_cell::sync::Lazy::force(&MARKER_SET);
}

static MARKER_SET: once_cell::sync::Lazy<super::heuristic::Literals> =
    once_cell::sync::Lazy::new(|| super::heuristic::Literals::new(MARKER_WORDS));

fn is_strong_header(line: &str) -> bool {
    let name = line.split_once(':').map(|(n, _)| n).unwrap_or_default();
    [
        "from",
        "to",
        "message-id",
        "received",
        "return-path",
        "delivered-to",
        "mime-version",
        "dkim-signature",
        "content-type",
        "x-received",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn is_start_header(line: &str) -> bool {
    // A header name is short: look for the colon in the first 80 bytes only.
    let head = line.as_bytes().iter().take(80).position(|b| *b == b':');
    match head.and_then(|p| Some((line.get(..p)?, line.get(p + 1..)?))) {
        Some((name, _)) => {
            START_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
                || name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
                    && is_header_name(name)
        }
        None => false,
    }
}

/// A line that announces the returned message ("----- Original message -----",
/// "--- Below this line is a copy of the message.", "Unsent message follows").
pub(crate) fn is_marker(line: &str) -> bool {
    let t = line.trim();
    if t.len() < 8 || t.len() > 120 {
        return false;
    }
    // Lower-cased on the stack: this runs for every line of every message.
    let mut buf = [0u8; 120];
    let Some(dst) = buf.get_mut(..t.len()) else {
        return false;
    };
    dst.copy_from_slice(t.as_bytes());
    dst.make_ascii_lowercase();
    let Ok(l) = std::str::from_utf8(dst) else {
        return false;
    };
    let decorated = t.starts_with(['-', '=', '*', '_', '#', '[', '<', '+']);
    let has = MARKER_WORDS.iter().any(|w| l.contains(w));
    if !has {
        return false;
    }
    decorated
        || l.ends_with("follows")
        || l.ends_with("follows:")
        || l.ends_with("follows.")
        || l.ends_with(':')
        || l.starts_with("below this line")
        || l.starts_with("original message")
        || l.ends_with("message.") && l.contains("below")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn unfold_joins_folded_lines_and_drops_blank_ones() {
        assert_eq!(unfold("  a b \t"), "a b");
        assert_eq!(unfold("from x\r\n\tby y\n \n  id z\n"), "from x by y id z");
        assert_eq!(unfold("\n\n"), "");
        assert_eq!(unfold(" \u{e9}t\u{e9} \n\u{e9}"), "\u{e9}t\u{e9} \u{e9}");
    }

    #[test]
    fn header_text_block_gives_message_id() {
        let o = from_header_text(
            "Return-Path: <b@example.net>\nMessage-ID:\n <x1@example.net>\nSubject: hi\n\nbody",
        )
        .unwrap();
        assert_eq!(o.message_id.as_deref(), Some("x1@example.net"));
        assert_eq!(o.header("subject"), Some("hi"));
    }

    #[test]
    fn split_point_finds_marker_and_header_runs() {
        let t =
            "bounce text\n\n--- Below this line is a copy of the message.\n\nFrom: a@example.com\n";
        let (m, _) = split_point(t).unwrap();
        assert!(t[m..].starts_with("--- Below"));
        let t = "bounce text\n\nReceived: by x\nFrom: a@example.com\nTo: b@example.net\n";
        let (m, _) = split_point(t).unwrap();
        assert!(t[m..].starts_with("Received"));
        assert!(split_point("The original message was received at noon\nno headers").is_none());
    }
}

//! MIME reading: raw bytes in (any line ending), a flat [`Mail`] out — the top-level
//! headers, the human-readable text, the delivery-status and feedback-report bodies, and
//! the returned original message. Parsing is mail-parser's; this module only walks the
//! tree and bounds what it keeps, so the cost stays linear in the message size.

use std::borrow::Cow;

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, PartType};

use super::{OriginalMessage, original};

/// At most this much human-readable text is kept per part, and in all.
const MAX_PART_TEXT: usize = 256 * 1024;
const MAX_TEXT: usize = 1024 * 1024;
const MAX_HEADERS: usize = 300;
/// One parser for every message (building one sets up its header table). Only what the
/// detector reads as structure is parsed: the MIME headers (the part tree), Subject and
/// Comments as decoded text, the top-level From address. Every other header is skipped
/// by the parser and read from its raw bytes, unfolded ([`original::header_text`]):
/// addresses keep their exact form (a VERP address), and the address, date, id and
/// `Received` parsers (mail-parser 0.11.2's `Received` parser can index out of bounds on
/// malformed input, found by the fuzz target) cost a third of the parse for nothing.
static PARSER: once_cell::sync::Lazy<MessageParser> = once_cell::sync::Lazy::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        .header_address(HeaderName::From)
        .default_header_ignore()
});
/// Builds the parser ([`super::warm_up`]).
pub(crate) fn warm_up() {
    once_cell::sync::Lazy::force(&PARSER);
}
/// Nested reports (a report inside a message/rfc822) are followed this deep.
const MAX_DEPTH: usize = 4;

/// The flattened message.
#[derive(Debug, Default)]
pub(crate) struct Mail {
    /// Top-level headers, in order, as (name, decoded value).
    pub headers: Vec<(String, String)>,
    /// The decoded Subject.
    pub subject: Option<String>,
    /// The From address (lower-case), when there is one.
    pub from: Option<String>,
    /// The top-level content type, lower-case (`multipart/report`).
    pub content_type: String,
    /// `report-type` of a multipart/report, lower-case.
    pub report_type: Option<String>,
    /// Human-readable text parts, in order (HTML reduced to text).
    pub texts: Vec<String>,
    /// Bodies of message/delivery-status parts.
    pub status_parts: Vec<String>,
    /// Bodies of message/feedback-report parts.
    pub feedback_parts: Vec<String>,
    /// The returned original message, when attached.
    pub original: Option<OriginalMessage>,
    /// Bytes of text kept so far (bounded by `MAX_TEXT`).
    pub text_total: usize,
    /// The sender's own addresses, read once ([`super::heuristic::sender_addresses`]).
    pub(crate) senders: once_cell::unsync::OnceCell<Vec<String>>,
}

impl Mail {
    /// The first top-level header of that name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every top-level header of that name.
    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All the human-readable text, joined by blank lines.
    pub(crate) fn text(&self) -> String {
        self.texts.join("\n\n")
    }
}

/// Line endings to LF: CRLF and CR-only both become LF.
pub(crate) fn normalize_newlines(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\r', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(p) = memchr::memchr(b'\r', rest) {
        out.extend_from_slice(rest.get(..p).unwrap_or_default());
        out.push(b'\n');
        rest = rest.get(p + 1..).unwrap_or_default();
        if rest.first() == Some(&b'\n') {
            rest = rest.get(1..).unwrap_or_default();
        }
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

/// Skips a leading mbox `From ` line, which is not a header.
fn skip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(p) => raw.get(p + 1..).unwrap_or_default(),
            None => raw,
        }
    } else {
        raw
    }
}

/// Parses and flattens. `None` when mail-parser finds no message at all.
pub(crate) fn read(raw: &[u8]) -> Option<Mail> {
    let raw = skip_mbox_line(raw);
    let message = PARSER.parse(raw)?;
    let root = message.parts.first()?;
    let mut mail = Mail::default();
    let raw_bytes: &[u8] = message.raw_message.as_ref();
    for h in root.headers.iter().take(MAX_HEADERS) {
        mail.headers
            .push((h.name().to_owned(), original::header_text(raw_bytes, h)));
    }
    const KNOWN: &[&str] = &[
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "received",
        "return-path",
        "content-type",
        "mime-version",
        "sender",
        "reply-to",
        "cc",
    ];
    if !mail
        .headers
        .iter()
        .any(|(n, _)| KNOWN.iter().any(|k| n.eq_ignore_ascii_case(k)))
    {
        return None;
    }
    mail.subject = message.subject().map(|s| s.trim().to_owned());
    mail.from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .or_else(|| mail.header("from").map(|f| f.trim().to_lowercase()));
    let (ct, report_type) = content_type(root);
    mail.content_type = ct;
    mail.report_type = report_type;
    let mut walker = Walker { mail, depth: 0 };
    walker.walk(&message, 0);
    let mut mail = walker.mail;
    // Broken MIME (a boundary that never appears, a header folded without indentation)
    // can leave no readable part at all: read the raw body as text then.
    let nothing_read = mail.texts.iter().all(|t| t.trim().is_empty())
        && mail.status_parts.is_empty()
        && mail.feedback_parts.is_empty();
    if nothing_read {
        let body_start = root.offset_body as usize;
        if let Some(body) = raw_bytes.get(body_start..) {
            let body = body
                .get(..body.len().min(MAX_PART_TEXT))
                .unwrap_or_default();
            mail.texts = vec![String::from_utf8_lossy(body).into_owned()];
        }
    }
    Some(mail)
}

fn content_type(part: &MessagePart<'_>) -> (String, Option<String>) {
    let ct = part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::ContentType)
        .and_then(|h| h.value().as_content_type());
    match ct {
        Some(ct) => {
            let full = match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            }
            .to_ascii_lowercase();
            let rt = ct
                .attribute("report-type")
                .map(|r| r.trim().to_ascii_lowercase());
            (full, rt)
        }
        None => ("text/plain".to_owned(), None),
    }
}

struct Walker {
    mail: Mail,
    depth: usize,
}

impl Walker {
    fn walk(&mut self, message: &Message<'_>, id: u32) {
        let Some(part) = message.parts.get(id as usize) else {
            return;
        };
        let (ct, _) = content_type(part);
        match &part.body {
            PartType::Multipart(children) => {
                for &child in children {
                    // A malformed tree must not loop.
                    if child > id {
                        self.walk(message, child);
                    }
                }
            }
            PartType::Text(text) => self.text_part(&ct, text),
            PartType::Html(html) => {
                let t = strip_html(html);
                self.push_text(&t);
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                // Only the report parts are read as text; attachments are left alone.
                let text = || {
                    String::from_utf8_lossy(
                        bytes
                            .get(..bytes.len().min(MAX_PART_TEXT))
                            .unwrap_or_default(),
                    )
                };
                match ct.as_str() {
                    "message/delivery-status" | "message/global-delivery-status" => {
                        self.mail.status_parts.push(text().into_owned())
                    }
                    "message/feedback-report" => self.mail.feedback_parts.push(text().into_owned()),
                    "message/rfc822-headers"
                    | "message/global-headers"
                    | "message/rfc822"
                    | "message/global"
                    | "message/partial"
                        if self.mail.original.is_none() =>
                    {
                        self.mail.original = original::from_header_text(&text());
                    }
                    _ => {}
                }
            }
            PartType::Message(nested) => {
                if self.depth < MAX_DEPTH && self.is_nested_report(nested) {
                    self.depth += 1;
                    self.walk(nested, 0);
                    self.depth -= 1;
                } else if self.mail.original.is_none() {
                    self.mail.original = Some(original::from_message(nested));
                }
            }
        }
    }

    /// A message/rfc822 part holds a report to read (rather than the returned original)
    /// only when the outer message has no report of its own yet and the nested message
    /// is itself a multipart/report.
    fn is_nested_report(&self, nested: &Message<'_>) -> bool {
        if !self.mail.status_parts.is_empty() || !self.mail.feedback_parts.is_empty() {
            return false;
        }
        let Some(root) = nested.parts.first() else {
            return false;
        };
        let (ct, _) = content_type(root);
        ct == "multipart/report"
    }

    fn text_part(&mut self, ct: &str, text: &str) {
        match ct {
            "text/rfc822-headers" | "text/rfc822" => {
                if self.mail.original.is_none() {
                    self.mail.original = original::from_header_text(text);
                }
            }
            // A delivery-status report mislabelled as text.
            "text/delivery-status" | "text/x-delivery-status" => {
                self.mail.status_parts.push(bounded(text).to_owned())
            }
            _ => self.push_text(text),
        }
    }

    fn push_text(&mut self, text: &str) {
        if self.mail.text_total >= MAX_TEXT {
            return;
        }
        let t = bounded(text);
        self.mail.text_total += t.len();
        self.mail.texts.push(t.to_owned());
    }
}

fn bounded(text: &str) -> &str {
    if text.len() <= MAX_PART_TEXT {
        return text;
    }
    let mut end = MAX_PART_TEXT;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// HTML to plain text, roughly: tags dropped (block tags become newlines), the common
/// entities decoded, script and style content dropped.
pub(crate) fn strip_html(html: &str) -> String {
    let html = bounded(html);
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(rest.get(..lt).unwrap_or_default());
        let after = rest.get(lt..).unwrap_or_default();
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = after.get(1..gt).unwrap_or_default().to_ascii_lowercase();
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        rest = after.get(gt + 1..).unwrap_or_default();
        if (name == "script" || name == "style") && !tag.starts_with('/') {
            let close = format!("</{name}");
            match rest.to_ascii_lowercase().find(&close) {
                Some(p) => rest = rest.get(p..).unwrap_or_default(),
                None => rest = "",
            }
            continue;
        }
        if matches!(
            name,
            "br" | "p"
                | "div"
                | "tr"
                | "li"
                | "table"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "pre"
                | "blockquote"
        ) {
            out.push('\n');
        } else if matches!(name, "td" | "th") {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_received_header_cut_off_at_the_end_does_not_stop_the_reading() {
        // mail-parser's structured `Received` parser panics on this; it is read raw.
        let raw = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\n\
            Received: from mx0.example.net (mx0.in.example.net [192.0.2.4])\n\t";
        let d = super::super::detect(raw);
        assert_eq!(d.report.error, None);
        assert!(read(raw).is_some());
    }

    #[test]
    fn normalize_newlines_handles_cr_and_crlf() {
        assert_eq!(normalize_newlines(b"a\r\nb\rc\n").as_ref(), b"a\nb\nc\n");
        assert!(matches!(normalize_newlines(b"a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn strip_html_keeps_text() {
        assert_eq!(
            strip_html("<p>a&amp;b</p><script>x</script>c<br>d").trim(),
            "a&b\nc\nd"
        );
    }
}

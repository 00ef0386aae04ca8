//! MIME reading: raw bytes in (any line ending), a flat [`Mail`] out — the top-level
//! headers, the human-readable text, the delivery-status and feedback-report bodies, and
//! the returned original message. Parsing is mail-parser's; this module only walks the
//! tree and bounds what it keeps, so the cost stays linear in the message size.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderName, Message, MessageParser, MessagePart, PartType};

use super::{OriginalMessage, original, transfer};

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
///
/// `Content-Transfer-Encoding` is skipped too, so the parser decodes no part: the walk
/// decodes the few parts it reads ([`Walker::leaf`]) with the parser's own decoders, and
/// attachments and the body of a returned message (a quoted-printable HTML newsletter, an
/// image) are never decoded. A message with an encoded `message/rfc822` part, whose
/// structure depends on decoding it, is parsed again with [`FULL_PARSER`].
static PARSER: once_cell::sync::Lazy<MessageParser> =
    once_cell::sync::Lazy::new(|| structure_parser(MessageParser::new()).default_header_ignore());
/// [`PARSER`] that also decodes every part, as mail-parser does by default.
static FULL_PARSER: once_cell::sync::Lazy<MessageParser> = once_cell::sync::Lazy::new(|| {
    structure_parser(MessageParser::new())
        .header_text(HeaderName::ContentTransferEncoding)
        .default_header_ignore()
});

/// mail-parser's `with_mime_headers` less `Content-Transfer-Encoding`, and the headers
/// the detector reads decoded.
fn structure_parser(p: MessageParser) -> MessageParser {
    p.header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .header_id(HeaderName::ContentId)
        .header_text(HeaderName::ContentDescription)
        .header_text(HeaderName::ContentLocation)
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        .header_address(HeaderName::From)
}

/// Builds the parsers ([`super::warm_up`]).
pub(crate) fn warm_up() {
    once_cell::sync::Lazy::force(&PARSER);
    once_cell::sync::Lazy::force(&FULL_PARSER);
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
    read_as(raw, false)
}

/// [`read`]; `full` parses with [`FULL_PARSER`] whatever the message (the tests compare).
fn read_as(raw: &[u8], full: bool) -> Option<Mail> {
    let raw = skip_mbox_line(raw);
    let mut message = if full { None } else { PARSER.parse(raw) };
    let lazy = message.as_ref().is_some_and(|m| !decodes_structure(m));
    if !lazy {
        message = FULL_PARSER.parse(raw);
    }
    let message = message?;
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
    let mut walker = Walker {
        mail,
        depth: 0,
        lazy,
    };
    walker.walk(&message, 0, b"");
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

/// The part's last `Content-Type` (the one mail-parser goes by).
fn last_content_type<'a>(part: &'a MessagePart<'_>) -> Option<&'a ContentType<'a>> {
    part.headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentType)
        .and_then(|h| h.value().as_content_type())
}

/// A part's transfer encoding, decided as mail-parser decides it: the last
/// `Content-Transfer-Encoding` header, its value read as unstructured text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Base64,
    QuotedPrintable,
}

fn transfer(raw: &[u8], part: &MessagePart<'_>) -> Option<Transfer> {
    let h = part
        .headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)?;
    let value = original::transfer_encoding_value(raw, h)?;
    if value.eq_ignore_ascii_case("base64") {
        Some(Transfer::Base64)
    } else if value.eq_ignore_ascii_case("quoted-printable") {
        Some(Transfer::QuotedPrintable)
    } else {
        None
    }
}

/// True when the message has an encoded part that mail-parser parses as a nested message
/// once decoded (`message/rfc822` or `message/global`, or a part without a type in a
/// `multipart/digest`): its structure is only right when parsed with [`FULL_PARSER`].
fn decodes_structure(message: &Message<'_>) -> bool {
    let raw: &[u8] = message.raw_message.as_ref();
    let digest = message.parts.iter().any(|p| {
        last_content_type(p).is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
        })
    });
    message.parts.iter().any(|part| {
        let is_message = match last_content_type(part) {
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                    })
            }
            None => digest,
        };
        (is_message && transfer(raw, part).is_some())
            || matches!(&part.body, PartType::Message(nested) if decodes_structure(nested))
    })
}

/// A leaf part's body, decoded.
enum Leaf<'a> {
    Text(Cow<'a, str>),
    Html(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
}

/// Decoded bytes to text by the part's charset, as mail-parser does it.
fn charset_text<'a>(part: &MessagePart<'_>, bytes: Cow<'a, [u8]>) -> Cow<'a, str> {
    let decoder = last_content_type(part)
        .and_then(|ct| ct.attribute("charset"))
        .and_then(|c| charset_decoder(c.as_bytes()));
    match (bytes, decoder) {
        (Cow::Owned(v), Some(d)) => Cow::Owned(d(&v)),
        (Cow::Owned(v), None) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        (Cow::Borrowed(b), Some(d)) => Cow::Owned(d(b)),
        (Cow::Borrowed(b), None) => String::from_utf8_lossy(b),
    }
}

struct Walker {
    mail: Mail,
    depth: usize,
    /// The message was parsed with [`PARSER`]: a part is decoded when it is read.
    lazy: bool,
}

impl Walker {
    /// Walks part `id` of `message`; `boundary` is the one the part ends at (that of the
    /// multipart it is in), which decoding it needs.
    fn walk(&mut self, message: &Message<'_>, id: u32, boundary: &[u8]) {
        let Some(part) = message.parts.get(id as usize) else {
            return;
        };
        let (ct, _) = content_type(part);
        match &part.body {
            PartType::Multipart(children) => {
                let inner = last_content_type(part)
                    .and_then(|c| c.attribute("boundary"))
                    .map(str::as_bytes)
                    .unwrap_or_default();
                for &child in children {
                    // A malformed tree must not loop.
                    if child > id {
                        self.walk(message, child, inner);
                    }
                }
            }
            PartType::Message(nested) => {
                if self.depth < MAX_DEPTH && self.is_nested_report(nested) {
                    self.depth += 1;
                    // Parsed in place: the nested message ends where its part does.
                    self.walk(nested, 0, boundary);
                    self.depth -= 1;
                } else if self.mail.original.is_none() {
                    self.mail.original = Some(original::from_message(nested));
                }
            }
            _ => match self.leaf(message, part, &ct, boundary) {
                Leaf::Text(text) => self.text_part(&ct, &text),
                Leaf::Html(html) => {
                    let t = strip_html(&html);
                    self.push_text(&t);
                }
                Leaf::Bytes(bytes) => self.binary_part(&ct, &bytes),
            },
        }
    }

    /// The body of a leaf part as mail-parser decodes it by default: decoded now when the
    /// message was parsed without decoding, with the parser's own decoders, from the
    /// part's body to `boundary`. A body that does not decode is kept raw, as text, as
    /// the parser keeps it.
    fn leaf<'a>(
        &self,
        message: &'a Message<'_>,
        part: &'a MessagePart<'_>,
        ct: &str,
        boundary: &[u8],
    ) -> Leaf<'a> {
        let given = match &part.body {
            PartType::Text(t) => Leaf::Text(Cow::Borrowed(t.as_ref())),
            PartType::Html(h) => Leaf::Html(Cow::Borrowed(h.as_ref())),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                Leaf::Bytes(Cow::Borrowed(b.as_ref()))
            }
            PartType::Multipart(_) | PartType::Message(_) => Leaf::Bytes(Cow::Borrowed(&[])),
        };
        if !self.lazy || part.is_encoding_problem {
            return given;
        }
        let raw: &'a [u8] = message.raw_message.as_ref();
        let Some(encoding) = transfer(raw, part) else {
            return given;
        };
        let body = raw.get(part.offset_body as usize..).unwrap_or_default();
        let read = match &given {
            Leaf::Bytes(_) => self.reads_binary(ct),
            Leaf::Text(_) | Leaf::Html(_) => true,
        };
        let decoded = match encoding {
            Transfer::QuotedPrintable => transfer::quoted_printable(body, boundary),
            // An attachment is only checked: one that does not decode is read as text.
            Transfer::Base64 if !read => {
                if transfer::base64_decodes(body, boundary) {
                    return Leaf::Bytes(Cow::Borrowed(&[]));
                }
                None
            }
            Transfer::Base64 => {
                let (end, bytes) = MessageStream::new(body).decode_base64_mime(boundary);
                (end != usize::MAX).then(|| bytes.into_owned())
            }
        };
        match (decoded, given) {
            (None, Leaf::Text(t) | Leaf::Html(t)) => Leaf::Text(t),
            (None, Leaf::Bytes(b)) => Leaf::Text(charset_text(part, b)),
            (Some(d), Leaf::Text(_)) => Leaf::Text(charset_text(part, Cow::Owned(d))),
            (Some(d), Leaf::Html(_)) => Leaf::Html(charset_text(part, Cow::Owned(d))),
            (Some(d), Leaf::Bytes(_)) => Leaf::Bytes(Cow::Owned(d)),
        }
    }

    /// Whether [`Walker::binary_part`] reads a part of this type.
    fn reads_binary(&self, ct: &str) -> bool {
        match ct {
            "message/delivery-status"
            | "message/global-delivery-status"
            | "message/feedback-report" => true,
            "message/rfc822-headers"
            | "message/global-headers"
            | "message/rfc822"
            | "message/global"
            | "message/partial" => self.mail.original.is_none(),
            _ => false,
        }
    }

    /// A non-text part: only the report parts are read as text; attachments are left alone.
    fn binary_part(&mut self, ct: &str, bytes: &[u8]) {
        let text = || {
            let b = bytes
                .get(..bytes.len().min(MAX_PART_TEXT))
                .unwrap_or_default();
            // Valid UTF-8 (nearly always) is checked faster than the lossy reading goes.
            match std::str::from_utf8(b) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(b),
            }
        };
        match ct {
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

    /// Every `.eml` file of the corpus (`REBOUND_CORPUS`, as in `tests/support/corpus.rs`).
    fn corpus_files() -> Vec<std::path::PathBuf> {
        let dir = std::env::var_os("REBOUND_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/sisimai")
            });
        let mut out = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "eml") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn decoding_parts_when_read_reads_what_decoding_every_part_reads() {
        let files = corpus_files();
        if files.is_empty() {
            let why = "SKIPPED: corpus not found (set REBOUND_CORPUS)";
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), format!("{why}\n").as_bytes());
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "{why}"
            );
            return;
        }
        let mut encoded = 0;
        for f in &files {
            let raw = std::fs::read(f).expect("reading a corpus file");
            let raw = normalize_newlines(&raw);
            let lazy = format!("{:?}", read_as(&raw, false));
            let full = format!("{:?}", read_as(&raw, true));
            assert_eq!(lazy, full, "{}", f.display());
            if raw
                .windows(16)
                .any(|w| w.eq_ignore_ascii_case(b"quoted-printable"))
            {
                encoded += 1;
            }
        }
        assert!(encoded > 10, "the corpus has few encoded parts: {encoded}");
    }

    #[test]
    fn an_encoded_attached_message_is_parsed_decoded() {
        let raw = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
            --b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n\
            Delivery to a@example.com failed=2E\n\
            --b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n\
            TWVzc2FnZS1JRDogPHgxQGV4YW1wbGUuY29tPgpTdWJqZWN0OiBoaQoKYm9keQo=\n--b--\n";
        let mail = read(raw).expect("a message");
        assert_eq!(
            mail.texts,
            vec!["Delivery to a@example.com failed.".to_owned()]
        );
        let original = mail.original.expect("the attached message");
        assert_eq!(original.message_id.as_deref(), Some("x1@example.com"));
        assert_eq!(
            format!("{:?}", read_as(raw, true)),
            format!("{:?}", read(raw))
        );
    }

    #[test]
    fn a_part_that_does_not_decode_is_read_raw_as_the_parser_keeps_it() {
        // A bad escape in a quoted-printable HTML part, and a broken base64 attachment.
        let raw = b"From: a@example.net\nSubject: x\nContent-Type: multipart/mixed; boundary=b\n\n\
            --b\nContent-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n\
            <p>bad =ZZ escape</p>\n\
            --b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n\
            not base64!\n--b--\n";
        let lazy = read(raw).expect("a message");
        assert_eq!(
            lazy.texts,
            vec!["<p>bad =ZZ escape</p>".to_owned(), "not base64!".to_owned()]
        );
        assert_eq!(
            format!("{lazy:?}"),
            format!("{:?}", read_as(raw, true).expect("a message"))
        );
    }

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

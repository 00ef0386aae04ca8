//! Status codes: RFC 3463 enhanced status codes (`5.1.1`) and SMTP reply codes (`550`),
//! read from `Status:` fields, diagnostic text or the human-readable part of a bounce.
//!
//! Input is text, output is a normalised code; nothing here panics on any input.

use crate::verdict::Reason;

/// The first RFC 3463 enhanced status code in `text` (`4.2.2`, `5.7.26`, `5.4.312`).
///
/// A code must stand alone: `192.0.2.1`, `1.5.1.1` or `v5.1.10a` are not codes. The class
/// must be 2, 4 or 5, the subject at most three digits and the detail at most three.
///
/// # Examples
/// ```
/// use rebound::detector::status::find_enhanced;
/// assert_eq!(find_enhanced("550 5.1.1 <a@example.com>: unknown").as_deref(), Some("5.1.1"));
/// assert_eq!(find_enhanced("host 192.0.2.1 said no"), None);
/// ```
pub fn find_enhanced(text: &str) -> Option<String> {
    enhanced_codes(text).next()
}

/// Every standalone enhanced status code in `text`, in order.
pub fn enhanced_codes(text: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        while pos < bytes.len() {
            let start = pos;
            let b = bytes.get(start).copied().unwrap_or(0);
            pos += 1;
            if !matches!(b, b'2' | b'4' | b'5') {
                continue;
            }
            if start > 0 {
                let prev = bytes.get(start - 1).copied().unwrap_or(b' ');
                // "550-5.7.26": a continued reply line; any other word character before is not a code.
                let after_reply = prev == b'-'
                    && start >= 4
                    && bytes
                        .get(start - 4..start - 1)
                        .is_some_and(|c| c.iter().all(u8::is_ascii_digit))
                    && (start == 4
                        || bytes
                            .get(start - 5)
                            .is_some_and(|c| !c.is_ascii_alphanumeric()));
                if !after_reply
                    && (prev.is_ascii_alphanumeric()
                        || prev == b'.'
                        || prev == b'_'
                        || prev == b'-')
                {
                    continue;
                }
            }
            if let Some((code, end)) = code_at(bytes, start) {
                pos = end;
                return Some(code);
            }
        }
        None
    })
}

/// The most telling enhanced code in `text`: among the codes of `class` (or, without a
/// class, the failure codes 4.x.x/5.x.x), the first with a non-zero detail, else the first.
/// Servers often write a generic code first and the specific one later
/// (`5.1.0 - Unknown address error 550-'5.7.1 … Access denied'`).
///
/// # Examples
/// ```
/// use rebound::detector::status::pick;
/// assert_eq!(pick("Out: 250 2.1.5 Ok Out: 451 4.3.0 queue file write error", None).as_deref(), Some("4.3.0"));
/// assert_eq!(pick("5.1.0 - Unknown address error 550-'5.7.1 Access denied'", Some('5')).as_deref(), Some("5.7.1"));
/// ```
pub fn pick(text: &str, class: Option<char>) -> Option<String> {
    let codes: Vec<String> = enhanced_codes(text).take(32).collect();
    let mut pool: Vec<&String> = match class {
        Some(c) => codes.iter().filter(|x| x.starts_with(c)).collect(),
        None => codes.iter().filter(|x| !x.starts_with('2')).collect(),
    };
    if pool.is_empty() && class.is_none() {
        pool = codes.iter().collect();
    }
    pool.iter()
        .find(|x| !x.ends_with(".0"))
        .or(pool.first())
        .map(|x| (*x).clone())
}

/// Reads `C.SSS.DDD` at `start`; returns the code and the end offset.
fn code_at(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    if bytes.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let subj_start = i;
    while bytes.get(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    let subj_len = i - subj_start;
    if subj_len == 0 || subj_len > 3 || bytes.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let det_start = i;
    while bytes.get(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    let det_len = i - det_start;
    if det_len == 0 || det_len > 3 {
        return None;
    }
    // Must not continue as a longer dotted number or a word.
    match bytes.get(i) {
        Some(b'.') if bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => return None,
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => return None,
        _ => {}
    }
    let s = std::str::from_utf8(bytes.get(start..i)?).ok()?;
    // Drop leading zeros ("5.01.001" is "5.1.1").
    let mut parts = s.split('.');
    let class = parts.next()?;
    let subject: u32 = parts.next()?.parse().ok()?;
    let detail: u32 = parts.next()?.parse().ok()?;
    if subject > 9 && subject != 0 {
        // RFC 3463 subjects are 0–7; allow none of the wider ones.
        return None;
    }
    Some((format!("{class}.{subject}.{detail}"), i))
}

/// Normalises a `Status:` field value (`5.1.1 (Unknown user)`, `550 5.1.1`, `5.1.1`).
/// Returns `None` when it holds no enhanced code.
pub fn normalize(value: &str) -> Option<String> {
    find_enhanced(value)
}

/// The first SMTP reply code (`250`, `421`, `550`) in `text`: a known 2xx code, or a 4xx/5xx
/// code with a second digit 0–5, standing alone and followed by a space, a hyphen, a bracket or the end.
///
/// # Examples
/// ```
/// use rebound::detector::status::find_reply_code;
/// assert_eq!(find_reply_code("host said: 550-5.1.1 no such user"), Some(550));
/// assert_eq!(find_reply_code("in 2014 there were 5500 of them"), None);
/// ```
pub fn find_reply_code(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    let mut i = 0usize;
    while let Some(&[a, b, c]) = bytes.get(i..i + 3) {
        // 2xx replies are few (211, 214, 220, 221, 250–253); 4xx and 5xx use 0–5 as second digit.
        let plausible = match a {
            b'2' => matches!(
                (b, c),
                (b'1', b'1' | b'4') | (b'2', b'0' | b'1') | (b'5', b'0'..=b'3')
            ),
            b'4' | b'5' => (b'0'..=b'5').contains(&b) && c.is_ascii_digit(),
            _ => false,
        };
        if plausible {
            let prev_ok = match i.checked_sub(1).and_then(|p| bytes.get(p)) {
                None => true,
                Some(&p) => {
                    let after_digit = i
                        .checked_sub(2)
                        .and_then(|q| bytes.get(q))
                        .is_some_and(u8::is_ascii_digit);
                    !(p.is_ascii_alphanumeric()
                        || matches!(p, b'.' | b'-' | b'_' | b'/' | b'+' | b'=' | b'#')
                        || p == b':' && after_digit)
                }
            };
            let next = bytes.get(i + 3).copied();
            let next_ok = match next {
                None => true,
                Some(b' ' | b'\t' | b'\n' | b'-' | b')' | b']' | b'"' | b',' | b';') => {
                    // "550-" must not be a phone number or a date like 2014-07.
                    next != Some(b'-')
                        || bytes.get(i + 4).is_some_and(|c| {
                            matches!(c, b'2' | b'4' | b'5' | b' ') || c.is_ascii_alphabetic()
                        })
                }
                _ => false,
            };
            if prev_ok && next_ok {
                let code =
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                return Some(code);
            }
        }
        i += 1;
    }
    None
}

/// A status code for a recipient whose message shows none, built from the class of the
/// reply code (or the DSN action) and the reason — the way a careful reader would write
/// it down. Returns `None` when neither the class nor the reason says enough.
///
/// | reason | detail |
/// |---|---|
/// | user-unknown | x.1.1 |
/// | host-unknown | x.1.2 |
/// | has-moved | x.1.6 |
/// | mailbox-full | x.2.2 |
/// | suspend | x.2.1 |
/// | mesg-too-big | x.3.4 |
/// | exceed-limit | x.2.3 |
/// | system-full | x.3.1 |
/// | system-error | x.3.0 |
/// | expired | x.4.7 |
/// | network-error | x.4.0 |
/// | no-relaying | x.7.1 |
/// | syntax-error | x.5.2 |
/// | anything else | x.0.0 |
pub fn synthesize(class: char, reason: Reason) -> Option<String> {
    if !matches!(class, '2' | '4' | '5') {
        return None;
    }
    let detail = match reason {
        Reason::UserUnknown => "1.1",
        Reason::HostUnknown => "1.2",
        Reason::HasMoved => "1.6",
        Reason::MailboxFull => "2.2",
        Reason::Suspend => "2.1",
        Reason::MesgTooBig => "3.4",
        Reason::ExceedLimit => "2.3",
        Reason::SystemFull => "3.1",
        Reason::SystemError => "3.0",
        Reason::Expired => "4.7",
        Reason::NetworkError => "4.0",
        Reason::NoRelaying => "7.1",
        Reason::SyntaxError => "5.2",
        _ => "0.0",
    };
    Some(format!("{class}.{detail}"))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn enhanced_codes_stand_alone() {
        assert_eq!(find_enhanced("550 5.1.1 <a@b>").as_deref(), Some("5.1.1"));
        assert_eq!(
            find_enhanced("550-5.7.26 unauthenticated").as_deref(),
            Some("5.7.26")
        );
        assert_eq!(find_enhanced("Status: 4.4.7").as_deref(), Some("4.4.7"));
        assert_eq!(find_enhanced("#5.1.1 smtp;550").as_deref(), Some("5.1.1"));
        assert_eq!(find_enhanced("(5.2.2)").as_deref(), Some("5.2.2"));
        assert_eq!(find_enhanced("5.4.312 ok").as_deref(), Some("5.4.312"));
        assert_eq!(find_enhanced("[192.0.2.5]"), None);
        assert_eq!(find_enhanced("Exim 4.72"), None);
        assert_eq!(find_enhanced("version 2.4.5.1"), None);
        assert_eq!(find_enhanced("v5.1.1a"), None);
        assert_eq!(find_enhanced("smtp;5.1.1"), Some("5.1.1".into()));
    }

    #[test]
    fn reply_codes_stand_alone() {
        assert_eq!(find_reply_code("550 5.1.1 x"), Some(550));
        assert_eq!(find_reply_code("said: 421-too many"), Some(421));
        assert_eq!(find_reply_code("id 12345 date 2014-07-18"), None);
        assert_eq!(find_reply_code("smtp; 554"), Some(554));
        assert_eq!(find_reply_code("port 25 at 10:45:00"), None);
    }

    #[test]
    fn synthesize_uses_class_and_reason() {
        assert_eq!(
            synthesize('5', Reason::UserUnknown).as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            synthesize('4', Reason::MailboxFull).as_deref(),
            Some("4.2.2")
        );
        assert_eq!(synthesize('x', Reason::MailboxFull), None);
    }
}

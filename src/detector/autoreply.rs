//! RFC 3834 automatic replies (vacation, out of office): a parsed message in, whether it
//! is one out. Checked only after the report parsers, because delivery reports carry
//! `Auto-Submitted: auto-replied` too.

use super::mime::Mail;

/// Subject beginnings and phrases of automatic replies.
const SUBJECT_PHRASES: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "vacation",
    "away from",
    "abwesenheit",
    "absence",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "自動応答",
    "自動返信",
    "不在",
];

/// True when the message is an automatic reply.
pub(crate) fn is_auto_reply(mail: &Mail) -> bool {
    if let Some(v) = mail.header("auto-submitted") {
        let v = v.trim().to_ascii_lowercase();
        if v.starts_with("auto-replied") {
            return true;
        }
    }
    for name in [
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "x-vacation",
    ] {
        if mail.header(name).is_some() {
            return true;
        }
    }
    if let Some(p) = mail.header("precedence")
        && p.trim().eq_ignore_ascii_case("auto_reply")
    {
        return true;
    }
    let subject = mail.subject.as_deref().unwrap_or("").to_lowercase();
    let s = subject.trim_start_matches(|c: char| c == '[' || c.is_whitespace());
    s.starts_with("auto:") || SUBJECT_PHRASES.iter().any(|p| s.contains(p))
}

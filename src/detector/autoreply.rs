//! RFC 3834 automatic replies (vacation, out of office): a parsed message in, whether it
//! is one out, and whether it says the mailbox is abandoned. Checked only after the report
//! parsers, because delivery reports carry `Auto-Submitted: auto-replied` too.

use once_cell::sync::Lazy;

use super::heuristic::Pattern;
use super::mime::Mail;

/// "This inbox … is no longer in use": the mailbox (not a person: "I am no longer with the
/// company" is a departure notice, and its mail may well be forwarded) is abandoned. Two
/// small patterns and a check of the words between them, not one regex with a counted gap:
/// that regex cost more to build than every other pattern of the detector together.
/// Builds this module's patterns ([`super::warm_up`]).
pub(crate) fn warm_up() {
    for p in [&NO_LONGER, &MAILBOX_WORD] {
        Lazy::force(p);
    }
}

static NO_LONGER: Lazy<Pattern> = Lazy::new(|| {
    Pattern::new(
        r"(?i-u)\b(is|has been) no longer (in use|active|monitored|being monitored|checked|read|valid)",
    )
});

static MAILBOX_WORD: Lazy<Pattern> = Lazy::new(|| {
    Pattern::new(
        r"(?i-u)\b(in-?box|mailbox|e-?mail address|e-?mail account|e-?mail|address|account)\b",
    )
});

/// At most this many characters between the mailbox word and "is no longer", in one sentence.
const MAX_GAP: usize = 80;

/// Whether `gap` stays inside one sentence: no line break, `!` or `?`, and a `.` only
/// inside a word (`a@example.com`), not at a sentence's end.
fn one_sentence(gap: &str, next: Option<char>) -> bool {
    let mut chars = gap.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '!' | '?' => return false,
            '.' => {
                let after = chars.peek().copied().or(next);
                if after.is_none_or(char::is_whitespace) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

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

/// The line of an automatic reply that says the mailbox is no longer in use, if any.
pub(crate) fn abandoned(text: &str) -> Option<String> {
    let (at, until) = NO_LONGER.find_iter(text).into_iter().find_map(|m| {
        let before = text.get(..m.start())?;
        let sentence_start = before.rfind('\n').map_or(0, |i| i + 1);
        let word = MAILBOX_WORD
            .find_iter(before.get(sentence_start..)?)
            .into_iter()
            .rev()
            .find_map(|w| {
                let gap = before.get(sentence_start + w.end()..)?;
                (gap.chars().count() <= MAX_GAP
                    && one_sentence(gap, Some(m.as_str().chars().next()?)))
                .then_some(sentence_start + w.start())
            })?;
        Some((word, m.end()))
    })?;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[until..].find('\n').map_or(text.len(), |i| until + i);
    let line = text
        .get(start..end)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(line.chars().take(300).collect())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn abandoned_mailboxes_are_read_and_departures_are_not() {
        assert_eq!(
            abandoned("Hello.\nThis email inbox a@example.com is no longer in use.\nBye.")
                .as_deref(),
            Some("This email inbox a@example.com is no longer in use.")
        );
        assert!(abandoned("This mailbox is no longer monitored").is_some());
        assert!(
            abandoned("I am no longer with the company. Please contact b@example.com.").is_none()
        );
        assert!(abandoned("I am out of the office until Monday.").is_none());
        assert!(abandoned("Thanks for your email. Ann is no longer in use of it.").is_none());
    }
}

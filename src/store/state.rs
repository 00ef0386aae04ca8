//! The recipient state machine and the per-domain pause rule: pure functions the store
//! calls, with no database in sight (so a second SQL dialect cannot drift from them).
//!
//! [`transition`] decides what one booked record does to its recipient; [`soft_messages`]
//! counts what the soft rule counts; [`reactivate`] is the manual undo; [`should_pause`]
//! is `[rules] pause_on_sender_blocks`, [`complaint_level`] the complaint-rate guard.
//! The one question behind every rule is [`Blame`]: only failures blamed on the
//! recipient ever count against the recipient.

use crate::config::{ComplaintAction, PauseRule, RulesConfig};
use crate::verdict::{Blame, BounceClass, MessageKind, Reason};

use super::{EventKind, RecipientState};

/// What the store knows about one booked record when it decides the recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The message kind.
    pub kind: MessageKind,
    /// Hard or soft (bounces only).
    pub class: Option<BounceClass>,
    /// Whom the failure is about ([`effective_blame`]).
    pub blame: Option<Blame>,
    /// Distinct sent messages with a final, recipient-blamed soft failure within the
    /// soft window and since the last reactivation, this record included
    /// ([`soft_messages`]); only read when this record [`counts_as_soft`].
    pub soft_messages: u32,
}

/// The blame of a record: the one it carries, else the one its reason gives (records
/// from before blame existed, policies that set none).
pub fn effective_blame(
    blame: Option<Blame>,
    class: Option<BounceClass>,
    reason: Reason,
) -> Option<Blame> {
    blame.or_else(|| Blame::of_failure(class, reason))
}

/// Does a record count towards `soft_bounces_to_bounce`? A soft failure blamed on the
/// recipient that is final: a delay warning (`Action: delayed`) counts only through the
/// final failure of its message, never by itself.
pub fn counts_as_soft(
    kind: MessageKind,
    class: Option<BounceClass>,
    blame: Option<Blame>,
    action: Option<&str>,
) -> bool {
    kind == MessageKind::Bounce
        && class == Some(BounceClass::Soft)
        && blame == Some(Blame::Recipient)
        && !action.is_some_and(|a| a.eq_ignore_ascii_case("delayed"))
}

/// One earlier soft event of a recipient, as the soft rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftEvent {
    /// The event id (an event without an original Message-ID counts alone).
    pub id: i64,
    /// The original Message-ID: the sent message it is about.
    pub original_message_id: Option<String>,
    /// Its class.
    pub class: Option<BounceClass>,
    /// Its blame (already [`effective_blame`]).
    pub blame: Option<Blame>,
    /// Its DSN action.
    pub action: Option<String>,
}

/// The number of distinct sent messages among `events` that [`counts_as_soft`]: the
/// delay warnings and the final failure of one message count once, a message that only
/// ever got delay warnings not at all, and sender, transit or unknown failures never.
pub fn soft_messages(events: &[SoftEvent]) -> u32 {
    let seen: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| e.counts())
        .map(SoftEvent::message_key)
        .collect();
    u32::try_from(seen.len()).unwrap_or(u32::MAX)
}

impl SoftEvent {
    /// Whether it [`counts_as_soft`] (it is a bounce).
    fn counts(&self) -> bool {
        counts_as_soft(
            MessageKind::Bounce,
            self.class,
            self.blame,
            self.action.as_deref(),
        )
    }

    /// The sent message it is about, for counting messages rather than events.
    fn message_key(&self) -> String {
        match &self.original_message_id {
            Some(m) => format!("m:{m}"),
            None => format!("e:{}", self.id),
        }
    }
}

/// The recipient's next state after one record, or `None` when it stays.
///
/// | record | blame | effect |
/// |---|---|---|
/// | bounce, hard | recipient | active → bounced |
/// | bounce, soft, final | recipient | active → bounced once `soft_messages` reaches `soft_bounces_to_bounce` (0: never) |
/// | bounce, any | sender, transit, unknown | none |
/// | complaint | – | active or bounced → complained, when `complaint = "unsubscribe"` |
/// | anything else | – | none |
pub fn transition(
    current: RecipientState,
    facts: &Facts,
    rules: &RulesConfig,
) -> Option<RecipientState> {
    match facts.kind {
        MessageKind::Bounce => {
            if current != RecipientState::Active || facts.blame != Some(Blame::Recipient) {
                return None;
            }
            let bounced = match facts.class {
                Some(BounceClass::Hard) => true,
                Some(BounceClass::Soft) => {
                    let limit = rules.soft_bounces_to_bounce;
                    limit > 0 && facts.soft_messages >= limit
                }
                None => false,
            };
            bounced.then_some(RecipientState::Bounced)
        }
        MessageKind::Complaint => {
            let moves = matches!(current, RecipientState::Active | RecipientState::Bounced);
            (rules.complaint == ComplaintAction::Unsubscribe && moves)
                .then_some(RecipientState::Complained)
        }
        MessageKind::AutoReply | MessageKind::DeliveryNotice | MessageKind::Other => None,
    }
}

/// One event of a recipient, as [`replay`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// When it happened (ms).
    pub at: i64,
    /// What it is.
    pub kind: EventKind,
    /// Its soft-rule view (id, Message-ID, class, blame already [`effective_blame`], action).
    pub soft: SoftEvent,
}

/// The state a recipient's events lead to, from `active` (a recipient row only ever
/// starts so): each record through [`transition`] with the soft rule counted as booking
/// counts it (within the window and since the last reactivation), a reactivation back
/// to active, an unsubscribe through [`unsubscribe`]. Reprocessing uses it when it
/// replaces bookings: a recipient suppressed only by a verdict that no longer stands is
/// active again, one that a new verdict condemns is suppressed.
pub fn replay(events: &[Replayed], rules: &RulesConfig) -> RecipientState {
    let window = i64::try_from(rules.soft_bounce_window.as_millis()).unwrap_or(i64::MAX);
    let mut state = RecipientState::Active;
    // The soft rule's count as it slides: the soft events since the last reactivation
    // and within the window, oldest first, and how many of them each message has. One
    // pass, whatever the number of events (a role address may have thousands).
    let mut counted: std::collections::VecDeque<(i64, String)> = Default::default();
    let mut per_message: std::collections::HashMap<String, u32> = Default::default();
    for e in events {
        match e.kind {
            EventKind::Reactivation => {
                state = RecipientState::Active;
                counted.clear();
                per_message.clear();
            }
            EventKind::Unsubscribe => state = unsubscribe(state).unwrap_or(state),
            EventKind::Message(kind) => {
                let since = e.at.saturating_sub(window);
                while counted.front().is_some_and(|(at, _)| *at < since) {
                    if let Some((_, key)) = counted.pop_front()
                        && let Some(n) = per_message.get_mut(&key)
                    {
                        *n -= 1;
                        if *n == 0 {
                            per_message.remove(&key);
                        }
                    }
                }
                let soft = kind == MessageKind::Bounce && e.soft.counts();
                if soft {
                    let key = e.soft.message_key();
                    *per_message.entry(key.clone()).or_default() += 1;
                    counted.push_back((e.at, key));
                }
                let facts = Facts {
                    kind,
                    class: e.soft.class,
                    blame: e.soft.blame,
                    soft_messages: if soft {
                        u32::try_from(per_message.len()).unwrap_or(u32::MAX)
                    } else {
                        0
                    },
                };
                if let Some(to) = transition(state, &facts, rules) {
                    state = to;
                }
            }
        }
    }
    state
}

/// Why a reactivation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReactivateError {
    /// The recipient is active already: nothing to undo.
    #[error("the recipient is already active")]
    AlreadyActive,
}

/// The manual undo: a suppressed recipient (bounced, complained, unsubscribed) becomes
/// active again.
///
/// # Errors
/// [`ReactivateError::AlreadyActive`] for an active recipient.
pub fn reactivate(current: RecipientState) -> Result<RecipientState, ReactivateError> {
    match current {
        RecipientState::Active => Err(ReactivateError::AlreadyActive),
        RecipientState::Bounced | RecipientState::Complained | RecipientState::Unsubscribed => {
            Ok(RecipientState::Active)
        }
    }
}

/// A recipient asked to receive no more mail (RFC 8058 one-click, the unsubscribe page
/// or the `mailto:`): the state it ends in, or `None` when it is unsubscribed already
/// (nothing to record again). A bounced or complained recipient stays so (it gets no
/// mail either way; the request is still recorded, so a later reactivation is made
/// knowing it).
pub fn unsubscribe(current: RecipientState) -> Option<RecipientState> {
    match current {
        RecipientState::Active => Some(RecipientState::Unsubscribed),
        RecipientState::Unsubscribed => None,
        RecipientState::Bounced | RecipientState::Complained => Some(current),
    }
}

/// `[rules] pause_on_sender_blocks`: should a campaign's sends to one destination domain
/// pause, given the sender-blamed refusals and the sends to it within the rule's window?
/// Only with at least `min_sends` sends, and when refusals are at least `threshold` of
/// them (refusals not yet matched by a recorded send count as sends too).
pub fn should_pause(rule: &PauseRule, refusals: u64, sends: u64) -> bool {
    let sends = sends.max(refusals);
    sends > 0 && sends >= rule.min_sends && refusals as f64 >= rule.threshold * sends as f64
}

/// Where a campaign's complaint rate stands against `[rules]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComplaintLevel {
    /// Under `warn_complaint_rate`, or too few sends to say.
    Ok,
    /// At or over `warn_complaint_rate`.
    Warn,
    /// Over `max_complaint_rate`: the campaign pauses.
    Pause,
}

/// The complaint-rate guard: `complaints` over `sends` accepted, judged only from
/// `complaint_rate_min_sends` sends on. Pauses strictly over `max_complaint_rate` (0.3 %
/// is the limit itself, not past it); flags from `warn_complaint_rate`.
pub fn complaint_level(rules: &RulesConfig, complaints: u64, sends: u64) -> ComplaintLevel {
    if sends == 0 || sends < rules.complaint_rate_min_sends || complaints == 0 {
        return ComplaintLevel::Ok;
    }
    let rate = complaints as f64 / sends as f64;
    if rate > rules.max_complaint_rate {
        ComplaintLevel::Pause
    } else if rate >= rules.warn_complaint_rate {
        ComplaintLevel::Warn
    } else {
        ComplaintLevel::Ok
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    fn replayed(
        at: i64,
        kind: EventKind,
        class: Option<BounceClass>,
        blame: Option<Blame>,
    ) -> Replayed {
        Replayed {
            at,
            kind,
            soft: SoftEvent {
                id: at,
                original_message_id: Some(format!("<m{at}@example.org>")),
                class,
                blame,
                action: Some("failed".into()),
            },
        }
    }

    #[test]
    fn replay_follows_what_the_events_say_now() {
        use EventKind::{Reactivation, Unsubscribe};
        let bounce = EventKind::Message(MessageKind::Bounce);
        let complaint = EventKind::Message(MessageKind::Complaint);
        let (hard, soft) = (Some(BounceClass::Hard), Some(BounceClass::Soft));
        let (rcpt, sender) = (Some(Blame::Recipient), Some(Blame::Sender));
        let rules = RulesConfig {
            soft_bounces_to_bounce: 3,
            soft_bounce_window: Duration::from_millis(100),
            ..RulesConfig::default()
        };
        assert_eq!(replay(&[], &rules), RecipientState::Active);
        // A hard bounce that is now the sender's: nothing against the recipient.
        let now_sender = [replayed(1, bounce, hard, sender)];
        assert_eq!(replay(&now_sender, &rules), RecipientState::Active);
        let hard_one = [replayed(1, bounce, hard, rcpt)];
        assert_eq!(replay(&hard_one, &rules), RecipientState::Bounced);
        // Reactivated after it: active; bounced again after that: bounced.
        let mut events = vec![
            replayed(1, bounce, hard, rcpt),
            replayed(2, Reactivation, None, None),
        ];
        assert_eq!(replay(&events, &rules), RecipientState::Active);
        events.push(replayed(3, bounce, hard, rcpt));
        assert_eq!(replay(&events, &rules), RecipientState::Bounced);
        // The soft rule: three within the window, not counting those before a
        // reactivation or outside the window.
        let softs = |ats: &[i64]| -> Vec<Replayed> {
            ats.iter()
                .map(|&at| replayed(at, bounce, soft, rcpt))
                .collect()
        };
        assert_eq!(
            replay(&softs(&[10, 20, 30]), &rules),
            RecipientState::Bounced
        );
        assert_eq!(
            replay(&softs(&[10, 20, 200]), &rules),
            RecipientState::Active
        );
        let mut split = softs(&[10, 20]);
        split.push(replayed(25, Reactivation, None, None));
        split.extend(softs(&[30]));
        assert_eq!(replay(&split, &rules), RecipientState::Active);
        // Unsubscribed stays unsubscribed through later bounces' absence; a complaint
        // (with `complaint = "unsubscribe"`) wins over a bounce.
        let unsub = [replayed(1, Unsubscribe, None, None)];
        assert_eq!(replay(&unsub, &rules), RecipientState::Unsubscribed);
        let both = [
            replayed(1, bounce, hard, rcpt),
            replayed(2, complaint, None, None),
        ];
        assert_eq!(replay(&both, &rules), RecipientState::Complained);
        // One pass: 200 000 soft events of a role address, never three within the
        // window (one every 60 ms of a 100 ms window), then three.
        let mut long = softs(&(0..200_000).map(|i| i * 60).collect::<Vec<_>>());
        assert_eq!(replay(&long, &rules), RecipientState::Active);
        long.extend(softs(&[20_000_000, 20_000_010, 20_000_020]));
        assert_eq!(replay(&long, &rules), RecipientState::Bounced);
    }

    #[test]
    fn complaint_level_needs_enough_sends_and_pauses_past_the_limit() {
        let rules = RulesConfig::default(); // warn 0.1 %, pause past 0.3 %, 1000 sends
        assert_eq!(complaint_level(&rules, 50, 999), ComplaintLevel::Ok);
        assert_eq!(complaint_level(&rules, 0, 10_000), ComplaintLevel::Ok);
        assert_eq!(complaint_level(&rules, 9, 10_000), ComplaintLevel::Ok);
        assert_eq!(complaint_level(&rules, 10, 10_000), ComplaintLevel::Warn);
        assert_eq!(complaint_level(&rules, 30, 10_000), ComplaintLevel::Warn);
        assert_eq!(complaint_level(&rules, 31, 10_000), ComplaintLevel::Pause);
        assert_eq!(complaint_level(&rules, 4, 1000), ComplaintLevel::Pause);
        let never = RulesConfig {
            max_complaint_rate: 1.0,
            ..RulesConfig::default()
        };
        assert_eq!(complaint_level(&never, 1000, 1000), ComplaintLevel::Warn);
    }

    use Blame::{Recipient, Sender, Transit, Unknown};
    use BounceClass::{Hard, Soft};
    use RecipientState::{Active, Bounced, Complained, Unsubscribed};

    fn facts(kind: MessageKind, class: Option<BounceClass>, blame: Option<Blame>, n: u32) -> Facts {
        Facts {
            kind,
            class,
            blame,
            soft_messages: n,
        }
    }

    #[test]
    fn transition_follows_blame_over_a_table() {
        let rules = RulesConfig::default(); // 3 soft messages
        let ignore = RulesConfig {
            complaint: ComplaintAction::Ignore,
            ..RulesConfig::default()
        };
        let off = RulesConfig {
            soft_bounces_to_bounce: 0,
            ..RulesConfig::default()
        };
        let b = MessageKind::Bounce;
        let c = MessageKind::Complaint;
        #[rustfmt::skip]
        let table: &[(RecipientState, Facts, &RulesConfig, Option<RecipientState>)] = &[
            (Active, facts(b, Some(Hard), Some(Recipient), 0), &rules, Some(Bounced)),
            (Active, facts(b, Some(Hard), Some(Sender), 0), &rules, None),
            (Active, facts(b, Some(Hard), Some(Transit), 0), &rules, None),
            (Active, facts(b, Some(Hard), Some(Unknown), 0), &rules, None),
            (Active, facts(b, Some(Hard), None, 0), &rules, None),
            (Bounced, facts(b, Some(Hard), Some(Recipient), 0), &rules, None),
            (Complained, facts(b, Some(Hard), Some(Recipient), 0), &rules, None),
            (Active, facts(b, Some(Soft), Some(Recipient), 2), &rules, None),
            (Active, facts(b, Some(Soft), Some(Recipient), 3), &rules, Some(Bounced)),
            (Active, facts(b, Some(Soft), Some(Recipient), 9), &off, None),
            (Active, facts(b, Some(Soft), Some(Sender), 9), &rules, None),
            (Active, facts(b, Some(Soft), Some(Transit), 9), &rules, None),
            (Active, facts(b, Some(Soft), Some(Unknown), 9), &rules, None),
            (Active, facts(b, None, Some(Recipient), 9), &rules, None),
            (Active, facts(c, None, None, 0), &rules, Some(Complained)),
            (Bounced, facts(c, None, None, 0), &rules, Some(Complained)),
            (Unsubscribed, facts(c, None, None, 0), &rules, None),
            (Active, facts(c, None, None, 0), &ignore, None),
            (Active, facts(MessageKind::AutoReply, None, None, 0), &rules, None),
            (Active, facts(MessageKind::DeliveryNotice, None, None, 0), &rules, None),
            (Active, facts(MessageKind::Other, None, None, 0), &rules, None),
        ];
        for (i, (current, f, rules, want)) in table.iter().enumerate() {
            assert_eq!(
                transition(*current, f, rules),
                *want,
                "row {i}: {current:?} {f:?}"
            );
        }
    }

    #[test]
    fn soft_messages_count_final_recipient_failures_once_per_message() {
        let ev = |id, m: Option<&str>, blame, action: &str| SoftEvent {
            id,
            original_message_id: m.map(Into::into),
            class: Some(Soft),
            blame: Some(blame),
            action: Some(action.into()),
        };
        let events = [
            // m1: two delays then the final failure: one message.
            ev(1, Some("m1"), Recipient, "delayed"),
            ev(2, Some("m1"), Recipient, "delayed"),
            ev(3, Some("m1"), Recipient, "failed"),
            // m2: only delayed so far: nothing.
            ev(4, Some("m2"), Recipient, "delayed"),
            // m3: blocked (sender) and expired (transit): nothing.
            ev(5, Some("m3"), Sender, "failed"),
            ev(6, Some("m4"), Transit, "failed"),
            // Two failures with no original: two.
            ev(7, None, Recipient, "failed"),
            ev(8, None, Recipient, "failed"),
        ];
        assert_eq!(soft_messages(&events), 3);
        assert_eq!(soft_messages(&[]), 0);
    }

    #[test]
    fn effective_blame_falls_back_to_the_reason() {
        assert_eq!(
            effective_blame(None, Some(Soft), Reason::Blocked),
            Some(Sender)
        );
        assert_eq!(
            effective_blame(None, Some(Soft), Reason::MailboxFull),
            Some(Recipient)
        );
        assert_eq!(
            effective_blame(Some(Transit), Some(Soft), Reason::MailboxFull),
            Some(Transit)
        );
        assert_eq!(effective_blame(None, None, Reason::Feedback), None);
    }

    #[test]
    fn reactivate_undoes_suppression_only() {
        assert_eq!(reactivate(Bounced), Ok(Active));
        assert_eq!(reactivate(Complained), Ok(Active));
        assert_eq!(reactivate(Unsubscribed), Ok(Active));
        assert_eq!(reactivate(Active), Err(ReactivateError::AlreadyActive));
    }

    #[test]
    fn should_pause_needs_enough_sends_and_the_threshold() {
        let rule = PauseRule {
            threshold: 0.2,
            min_sends: 50,
            window: Duration::from_secs(3600),
        };
        assert!(!should_pause(&rule, 10, 49)); // too few sends
        assert!(should_pause(&rule, 10, 50)); // 20 %
        assert!(!should_pause(&rule, 9, 50)); // 18 %
        assert!(should_pause(&rule, 60, 40)); // more refusals than recorded sends
        assert!(!should_pause(&rule, 0, 0));
    }
}

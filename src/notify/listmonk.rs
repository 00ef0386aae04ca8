//! The listmonk adapter: an outbox row as listmonk's bounce webhook takes it
//! (`POST /webhooks/bounce`, an API user with the `webhooks:post_bounce` permission,
//! `Authorization: token <user>:<token>`).
//!
//! The body is `{"email", "source": "rebound", "type": "hard" | "soft" | "complaint",
//! "meta"}`, with `meta` a JSON *string* (listmonk's field is an escaped JSON document)
//! holding rebound's event id, reason, status, campaign and the state change. rebound's
//! campaign ids are not listmonk's campaign UUIDs, so `campaign_uuid` is left out: the
//! bounce is recorded against the subscriber. listmonk then applies its own bounce
//! actions (Settings → Bounces: blocklist or delete after N bounces of a type).

use serde::Serialize;

use crate::store::outbox::{Claimed, NotifyEvent, Payload};

/// listmonk's bounce webhook body.
#[derive(Debug, Serialize)]
struct Bounce<'a> {
    email: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    meta: String,
}

/// The JSON in `meta`.
#[derive(Debug, Serialize)]
struct Meta<'a> {
    rebound_event: NotifyEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<i64>,
    from: &'a str,
    to: &'a str,
    at: &'a str,
}

/// listmonk's `type` for an event: `complaint` for a complaint, `soft` for a recipient
/// bounced by the soft-bounce rule, else `hard`. `None` for the events listmonk's bounce
/// API has no word for (unsubscribed, reactivated; the config refuses them).
pub fn bounce_type(p: &Payload) -> Option<&'static str> {
    match p.event {
        NotifyEvent::Complained => Some("complaint"),
        NotifyEvent::Bounced if p.class.as_deref() == Some("soft") => Some("soft"),
        NotifyEvent::Bounced => Some("hard"),
        NotifyEvent::Unsubscribed | NotifyEvent::Reactivated => None,
    }
}

/// The body for row `row`.
///
/// # Errors
/// Why not: an unreadable payload, or an event listmonk's bounce API cannot take.
pub fn body(row: &Claimed) -> Result<Vec<u8>, String> {
    let p: Payload = serde_json::from_str(&row.payload).map_err(|e| e.to_string())?;
    let kind = bounce_type(&p)
        .ok_or_else(|| format!("listmonk's bounce API takes no {} event", p.event))?;
    let meta = Meta {
        rebound_event: p.event,
        event_id: p.event_id,
        reason: p.reason.as_deref(),
        status: p.status.as_deref(),
        campaign_id: p.campaign_id,
        from: p.from.as_str(),
        to: p.to.as_str(),
        at: &p.at,
    };
    let bounce = Bounce {
        email: &p.address,
        source: "rebound",
        kind,
        meta: serde_json::to_string(&meta).map_err(|e| e.to_string())?,
    };
    serde_json::to_vec(&bounce).map_err(|e| e.to_string())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::store::{RecipientState, Timestamp};

    fn row(event: NotifyEvent, class: Option<&str>) -> Claimed {
        let p = Payload {
            event,
            address: "a@example.org".into(),
            from: RecipientState::Active,
            to: RecipientState::Bounced,
            at: "2026-01-01T00:00:00Z".into(),
            event_at: None,
            event_id: Some(7),
            kind: Some("bounce".into()),
            class: class.map(str::to_owned),
            reason: Some("user-unknown".into()),
            status: Some("5.1.1".into()),
            campaign_id: None,
            source: Some("pop3:b@example.org".into()),
        };
        Claimed {
            id: 1,
            endpoint: "listmonk".into(),
            event: event.as_str().into(),
            address: p.address.clone(),
            payload: serde_json::to_string(&p).unwrap(),
            idempotency_key: "k".into(),
            attempts: 0,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn listmonk_body_has_email_type_source_and_string_meta() {
        let b: serde_json::Value =
            serde_json::from_slice(&body(&row(NotifyEvent::Bounced, Some("hard"))).unwrap())
                .unwrap();
        assert_eq!(b["email"], "a@example.org");
        assert_eq!(b["type"], "hard");
        assert_eq!(b["source"], "rebound");
        let meta: serde_json::Value = serde_json::from_str(b["meta"].as_str().unwrap()).unwrap();
        assert_eq!(meta["reason"], "user-unknown");
        assert_eq!(meta["event_id"], 7);
        assert!(b.get("campaign_uuid").is_none());
        let soft: serde_json::Value =
            serde_json::from_slice(&body(&row(NotifyEvent::Bounced, Some("soft"))).unwrap())
                .unwrap();
        assert_eq!(soft["type"], "soft");
        let c: serde_json::Value =
            serde_json::from_slice(&body(&row(NotifyEvent::Complained, None)).unwrap()).unwrap();
        assert_eq!(c["type"], "complaint");
        assert!(body(&row(NotifyEvent::Reactivated, None)).is_err());
        let mut bad = row(NotifyEvent::Bounced, None);
        bad.payload = "not json".into();
        assert!(body(&bad).is_err());
    }
}

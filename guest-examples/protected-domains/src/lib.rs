//! `protected-domains`: never hard-bounce an address of a domain the operator protects —
//! the company's own domains, a key customer, a partner whose gateway is known to answer
//! "user unknown" during maintenance. Their hard bounces become soft (the reason, status
//! and diagnostic stay, so the event is still recorded and counted against the soft-bounce
//! threshold); every other recipient is left alone.
//!
//! Config: `domains`, a comma-separated list (`"example.com, partner.example"`); a
//! subdomain of a listed domain is protected too. Without `domains` the policy keeps
//! everything (and says so in the log once per instance).

use std::sync::atomic::{AtomicBool, Ordering};

use rebound_sdk::{BounceClass, Decision, Message, MessageKind, Policy, PolicyError, Verdict};

static WARNED: AtomicBool = AtomicBool::new(false);

struct ProtectedDomains;

fn protected(address: &str, domains: &[String]) -> bool {
    rebound_sdk::domain_of(address).is_some_and(|d| {
        domains
            .iter()
            .any(|p| d == *p || d.ends_with(&format!(".{p}")))
    })
}

impl Policy for ProtectedDomains {
    fn evaluate(_message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        if current.kind != MessageKind::Bounce || !current.has_hard() {
            return Ok(Decision::Keep);
        }
        let domains: Vec<String> = rebound_sdk::config_list("domains")
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if domains.is_empty() {
            if !WARNED.swap(true, Ordering::Relaxed) {
                rebound_sdk::warn("no `domains` configured: nothing is protected");
            }
            return Ok(Decision::Keep);
        }
        let mut softened = 0;
        for r in &mut current.recipients {
            if r.bounce == Some(BounceClass::Hard) && protected(&r.address, &domains) {
                r.bounce = Some(BounceClass::Soft);
                softened += 1;
            }
        }
        if softened == 0 {
            return Ok(Decision::Keep);
        }
        rebound_sdk::info(&format!(
            "{softened} hard bounce(s) of protected domains made soft"
        ));
        Ok(Decision::Replace(current))
    }
}

rebound_sdk::export!(ProtectedDomains);

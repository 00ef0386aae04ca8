"""invalid-recipient, in Python: a message whose content says "invalid recipient" is a
hard bounce for the recipient the message names.

The same policy as guest-examples/invalid-recipient (Rust), and the same tests run on
both: the address on a line that says the phrase (else the recipient of the delivery
report, else the first address in the text that is not the bounce's sender) becomes a
hard `user-unknown` bounce with the 5.x.x code that line gives (5.1.1 if none). Every
other recipient stays as it was. Config (optional): `phrase` replaces the phrase.
"""

import rebound_policy as rp
from rebound_policy import BounceClass, MessageKind, Reason, Verdict


def evaluate(message, current):
    phrase = rp.config("phrase") or "invalid recipient"
    # The decoded text first; else the raw message (a transcript in an attachment the
    # detector did not decode, or a message it could not read at all).
    if (
        rp.contains(message.text(), phrase)
        or rp.contains(message.subject(), phrase)
        or any(rp.contains(d, phrase) for d in rp.diagnostics(message))
    ):
        text = message.text()
    elif rp.contains(message.raw().decode("utf-8", "replace"), phrase):
        text = message.raw().decode("utf-8", "replace")
    else:
        return rp.keep()
    evidence = [d for d in rp.diagnostics(message) if rp.contains(d, phrase)]
    evidence += [l.strip() for l in text.splitlines() if rp.contains(l, phrase)]
    sender = [a.lower() for a in rp.find_addresses(message.header("from") or "")]

    def not_sender(addresses):
        return [a for a in addresses if a.lower() not in sender]

    named = [a for line in evidence for a in not_sender(rp.find_addresses(line))]
    address = next(
        iter(named + rp.report_recipients(message) + not_sender(rp.find_addresses(text))),
        None,
    )
    if address is None:
        raise rp.PolicyError("the message says invalid recipient but names no address")
    codes = [c for line in evidence for c in rp.find_statuses(line) if c.startswith("5.")]
    status = codes[0] if codes else "5.1.1"
    diagnostic = evidence[0] if evidence else phrase

    if current.kind != MessageKind.BOUNCE:
        current = Verdict(kind=MessageKind.BOUNCE, recipients=[], decided_by="")
    r = rp.recipient(current, address)
    if r is None:
        current.recipients.append(
            rp.hard_bounce(address, Reason.USER_UNKNOWN, status, diagnostic)
        )
    else:
        r.reason, r.blame, r.status, r.bounce = Reason.USER_UNKNOWN, None, status, BounceClass.HARD
        r.diagnostic = r.diagnostic or diagnostic[:1000]
    rp.info(f"invalid recipient: hard bounce, status {status}")
    return rp.replace(current)


WitWorld = rp.policy(evaluate)

"""repeated-mailbox-full, in Python: the third final mailbox-full failure of an address
within 30 days is a hard bounce.

The same policy as guest-examples/repeated-mailbox-full (Rust), keeping the same entries
in its state (`full:<address>`, one line per send), and the same tests run on both. A
soft `mailbox-full` bounce blamed on the recipient, with an action other than `delayed`,
is one event; one send told twice (the same original Message-ID) counts once. Config
(optional): `after` (3), `window_days` (30).
"""

import rebound_policy as rp
from rebound_policy import Blame, BounceClass, MessageKind, Reason


def evaluate(message, current):
    after, days = int(rp.config("after") or 3), int(rp.config("window_days") or 30)
    original = message.original()
    send = (original.message_id if original else None) or ""
    changed = False
    for r in current.recipients if current.kind == MessageKind.BOUNCE else []:
        if (r.reason, r.bounce, r.blame) != (Reason.MAILBOX_FULL, BounceClass.SOFT, Blame.RECIPIENT) or r.action == "delayed":
            continue
        seen = rp.record_event(f"full:{r.address.lower()}", send, days * 86400)
        if seen >= after:
            r.bounce, changed = BounceClass.HARD, True
            r.diagnostic = f"mailbox full {seen} times in {days} days: {r.diagnostic or ''}"
    return rp.replace(current) if changed else rp.keep()


WitWorld = rp.policy(evaluate)

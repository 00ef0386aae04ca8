"""rebound policies in Python: the SDK.

A policy is a module with one function, ``evaluate(message, verdict)``, made the
component's export by ``WitWorld = rebound_policy.policy(evaluate)``, and built with
componentize-py against rebound's WIT (``make guests-python`` shows the command):

    componentize-py -d wit -w policy componentize -p sdk/python -p . app -o policy.wasm

``message`` is the returned message as the host read it (``message.text()``,
``message.raw()``, ``message.header(name)``, ``message.reports()``, ...; see
wit/policy.wit), ``verdict`` the verdict so far. ``evaluate`` returns ``keep()``,
``replace(verdict)`` or ``not_bounce()``, or raises ``PolicyError`` for an orderly failure
(the verdict from before stands). Any other exception traps, which the host counts as a
failure too.
"""

import re
from typing import Callable, List, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, state, types

# The WIT types, under the names the Rust SDK uses.
MessageKind = types.MessageKind
BounceClass = types.BounceClass
Reason = types.Reason
Blame = types.Blame
Verdict = types.Verdict
RecipientVerdict = types.RecipientVerdict


class PolicyError(Exception):
    """An orderly failure: the verdict from before the policy stands; logged, and counted
    towards disabling the policy like a trap."""


def policy(evaluate: Callable) -> type:
    """The component's export (assign it to ``WitWorld`` in the app module)."""

    class WitWorld(wit_world.WitWorld):
        def evaluate(self, message, current):
            try:
                return evaluate(message, current)
            except PolicyError as e:
                raise Err(types.PolicyError(str(e)))

    return WitWorld


def keep():
    """Leave the verdict as it is."""
    return types.Decision_Keep()


def replace(verdict: Verdict):
    """Use this verdict instead (decided by this policy)."""
    return types.Decision_Replace(verdict)


def not_bounce():
    """The message is not a bounce: nothing is recorded."""
    return types.Decision_NotBounce()


def config(key: str) -> Optional[str]:
    """The value of ``key`` in this policy's ``config`` table."""
    return host.config(key)


def now() -> int:
    """When the message being judged came in, in seconds since the Unix epoch (the
    sandbox has no clock)."""
    return state.now()


def state_get(key: str) -> Optional[str]:
    """The value this policy keeps under ``key``, unless it was never set, was deleted or
    has expired."""
    return state.get(key)


def state_set(key: str, value: str, ttl_seconds: int) -> None:
    """Keeps ``value`` under ``key`` for ``ttl_seconds`` (at most 400 days). Committed with
    the message's verdict, only when the message is recorded. Raises ``PolicyError`` when
    a limit refuses it (key 1 to 256 bytes, value size, key count, 64 writes a call)."""
    try:
        state.set(key, value, ttl_seconds)
    except Err as e:
        raise PolicyError(f"state: {key}: {e.value}")


def state_delete(key: str) -> None:
    """Deletes ``key``; raises ``PolicyError`` like ``state_set``."""
    try:
        state.delete(key)
    except Err as e:
        raise PolicyError(f"state: {key}: {e.value}")


def record_event(key: str, event_id: str, window_seconds: int) -> int:
    """Records one event under ``key`` at ``now()`` and returns how many fall within the
    last ``window_seconds``, this one included. An ``event_id`` already there in the window
    is the same event told twice: not recorded again, and the count is the one it had then.
    The same entries as the Rust SDK's ``state::record_event``, so the two read each
    other's."""
    since = now() - window_seconds
    events = []
    for line in (state_get(key) or "").split("\n"):
        time, _, seen = line.partition(" ")
        if time.isdigit() and int(time) > since:
            events.append((int(time), seen))
    event_id = event_id.replace("\n", " ").replace("\r", " ")
    for k, (_, seen) in enumerate(events):
        if event_id and seen == event_id:
            return k + 1
    events = (events + [(now(), event_id)])[-64:]
    state_set(key, "\n".join(f"{t} {i}" for t, i in events), window_seconds)
    return len(events)


def info(message: str) -> None:
    """One line in the host's log, tagged with the policy's name."""
    host.log(host.Level.INFO, message)


def warn(message: str) -> None:
    """A warning in the host's log."""
    host.log(host.Level.WARN, message)


def contains(text: Optional[str], needle: str) -> bool:
    """True if ``text`` contains ``needle``, ignoring case."""
    return bool(text) and bool(needle) and needle.lower() in text.lower()


_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+@[A-Za-z0-9\-.]+")


def find_addresses(text: str) -> List[str]:
    """Every e-mail address in ``text``, in order, without duplicates (ignoring case);
    the domain lower-cased."""
    found: List[str] = []
    for m in _ADDRESS.finditer(text or ""):
        local, domain = m.group(0).rsplit("@", 1)
        local = local.lstrip(".'`")
        domain = domain.rstrip(".-").lower()
        if not local or "." not in domain or domain[0] in ".-":
            continue
        address = f"{local}@{domain}"
        if address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found


_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")


def find_statuses(text: str) -> List[str]:
    """Every RFC 3463 enhanced status code (``5.1.1``) in ``text``, in order."""
    return [".".join(m.groups()) for m in _STATUS.finditer(text or "")]


def diagnostics(message) -> List[str]:
    """The ``Diagnostic-Code`` of every delivery report that has one."""
    return [r.diagnostic_code for r in message.reports() if r.diagnostic_code]


def report_recipients(message) -> List[str]:
    """The recipient of every delivery report (final, else original), in order."""
    out = []
    for r in message.reports():
        address = r.final_recipient or r.original_recipient
        if address:
            out.append(address)
    return out


def recipient(verdict: Verdict, address: str) -> Optional[RecipientVerdict]:
    """The verdict's entry for ``address`` (ignoring case)."""
    for r in verdict.recipients:
        if r.address.lower() == address.lower():
            return r
    return None


def hard_bounce(address: str, reason: Reason, status: str, diagnostic: Optional[str] = None):
    """A hard bounce of ``address`` (blame derived by the host from the reason)."""
    return RecipientVerdict(
        address=address,
        bounce=BounceClass.HARD,
        status=status,
        reason=reason,
        blame=None,
        diagnostic=diagnostic,
        action="failed",
        remote_mta=None,
        feedback_type=None,
    )

#!/usr/bin/env python3
"""rebound's test SMTP server (aiosmtpd), started by tests/support/smtp.rs.

Listens on 127.0.0.1 (port 0 = any free port) and writes into --dir:
  port            the port, once it accepts connections
  messages.jsonl  one line per accepted message: envelope, timestamps, size, file
  events.jsonl    one line per answer that was not 250 (and every MAIL), with a timestamp
  msgs/N.eml      the accepted messages

Behaviour comes from a JSON file (--behaviour), all keys optional:
  reject       [addr, ...]       550 5.1.1 at RCPT
  reject_data  [addr, ...]       554 5.7.1 after DATA
  defer        {addr: n, ...}    451 4.2.0 at RCPT for the first n tries (-1: always)
  throttle     {"every": n, "code": 421|454, "first": k}
                                 answer MAIL with the code for every n-th MAIL
                                 (421 also closes the connection); with "first": k,
                                 only the first k MAIL commands are throttled
  tls_cert, tls_key              offer STARTTLS with this certificate
  implicit_tls  true             TLS from the first byte instead (needs tls_cert/key)
  auth         {user: password}  offer AUTH PLAIN/LOGIN; mail only after AUTH
  slow_data    {addr: seconds}   store the message, then wait this long before the 250
                                 to the end of DATA
  drop_data    [addr, ...]       store the message, then close the connection without
                                 answering the end of DATA
  mail_reply   "451 4.3.0 ..."   answer every MAIL with this (a 4xx that never ends)
  rcpt_reply   "450 4.1.8 ..."   answer every RCPT with this
  smtputf8     true              offer SMTPUTF8 (off by default, as in aiosmtpd)
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, directory, behaviour):
        self.dir = directory
        self.b = behaviour
        os.makedirs(os.path.join(directory, "msgs"), exist_ok=True)
        self.messages = open(os.path.join(directory, "messages.jsonl"), "a", buffering=1)
        self.events = open(os.path.join(directory, "events.jsonl"), "a", buffering=1)
        self.reject = {a.lower() for a in behaviour.get("reject", [])}
        self.reject_data = {a.lower() for a in behaviour.get("reject_data", [])}
        self.defer = {k.lower(): v for k, v in behaviour.get("defer", {}).items()}
        self.throttle = behaviour.get("throttle")
        self.mail_count = 0
        self.count = 0
        self.auth = behaviour.get("auth")
        self.slow_data = {k.lower(): v for k, v in behaviour.get("slow_data", {}).items()}
        self.drop_data = {a.lower() for a in behaviour.get("drop_data", [])}
        self.mail_reply = behaviour.get("mail_reply")
        self.rcpt_reply = behaviour.get("rcpt_reply")

    def event(self, **fields):
        fields["ts"] = time.time()
        self.events.write(json.dumps(fields) + "\n")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_count += 1
        now = time.time()
        if self.auth and not session.authenticated:
            self.event(cmd="MAIL", arg=address, code=530)
            return "530 5.7.0 Authentication required"
        if self.mail_reply:
            self.event(cmd="MAIL", arg=address, code=int(self.mail_reply[:3]))
            return self.mail_reply
        t = self.throttle
        if t and self.mail_count % max(1, t.get("every", 1)) == 0 and (
            "first" not in t or self.mail_count <= t["first"]
        ):
            code = t.get("code", 421)
            self.event(cmd="MAIL", arg=address, code=code)
            if code == 421:
                asyncio.get_running_loop().call_later(0.005, server.transport.close)
                return "421 4.7.0 Too many messages, slow down"
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.rebound_mail_ts = now
        self.event(cmd="MAIL", arg=address, code=250)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        if self.rcpt_reply:
            self.event(cmd="RCPT", arg=address, code=int(self.rcpt_reply[:3]))
            return self.rcpt_reply
        if key in self.reject:
            self.event(cmd="RCPT", arg=address, code=550)
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table" % address
        left = self.defer.get(key)
        if left is not None and left != 0:
            if left > 0:
                self.defer[key] = left - 1
            self.event(cmd="RCPT", arg=address, code=451)
            return "451 4.2.0 <%s>: Mailbox temporarily unavailable, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        if any(r.lower() in self.reject_data for r in envelope.rcpt_tos):
            self.event(cmd="DATA", arg=",".join(envelope.rcpt_tos), code=554)
            return "554 5.7.1 Message rejected: content refused"
        self.count += 1
        name = "%d.eml" % self.count
        data = envelope.original_content or envelope.content
        with open(os.path.join(self.dir, "msgs", name), "wb") as f:
            f.write(data)
        message_id = None
        for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode("ascii", "replace")
        self.messages.write(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "mail_ts": getattr(session, "rebound_mail_ts", now),
                    "data_ts": now,
                    "size": len(data),
                    "message_id": message_id,
                    "file": name,
                }
            )
            + "\n"
        )
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        if any(r in self.drop_data for r in rcpts):
            self.event(cmd="DATA", arg=",".join(envelope.rcpt_tos), code=0)
            server.transport.abort()
            return "451 4.3.0 never seen: the connection is gone"
        delay = max([self.slow_data.get(r, 0) for r in rcpts] or [0])
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 OK: queued as %d" % self.count


def authenticator(recorder):
    def check(server, session, envelope, mechanism, auth_data):
        users = recorder.auth or {}
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if users.get(user) == password:
                return AuthResult(success=True)
        recorder.event(cmd="AUTH", arg=mechanism, code=535)
        # A failed AUTH must be answered, or the client waits for ever.
        return AuthResult(success=False, handled=False)

    return check


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--behaviour")
    args = p.parse_args()
    behaviour = {}
    if args.behaviour:
        with open(args.behaviour) as f:
            behaviour = json.load(f)
    recorder = Recorder(args.dir, behaviour)
    ctx = None
    if behaviour.get("tls_cert"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(behaviour["tls_cert"], behaviour["tls_key"])
    implicit = bool(behaviour.get("implicit_tls"))
    kwargs = dict(
        hostname="smtp.test",
        data_size_limit=None,
        enable_SMTPUTF8=bool(behaviour.get("smtputf8")),
    )
    if ctx is not None and not implicit:
        kwargs["tls_context"] = ctx
    if recorder.auth:
        kwargs["authenticator"] = authenticator(recorder)
        # With implicit TLS aiosmtpd does not know the session is encrypted.
        kwargs["auth_require_tls"] = ctx is not None and not implicit
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, **kwargs),
        host="127.0.0.1",
        port=args.port,
        ssl=ctx if implicit else None,
    )
    port = server.sockets[0].getsockname()[1]
    tmp = os.path.join(args.dir, "port.tmp")
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, os.path.join(args.dir, "port"))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

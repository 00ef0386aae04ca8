-- rebound store, schema 22: what each IMAP message held, so that a folder the server
-- rebuilt under a new UIDVALIDITY (every message renumbered) is not counted again.
-- One row per message the IMAP source fetched (its ledger uid `UIDVALIDITY.UID`), with
-- the SHA-256 of its bytes, written before the message is recorded: a digest whose uid
-- has a ledger row names a message that is recorded already.
CREATE TABLE imap_digests (
    mailbox TEXT    NOT NULL,
    uid     TEXT    NOT NULL,
    digest  TEXT    NOT NULL,
    PRIMARY KEY (mailbox, uid)
);
CREATE INDEX imap_digests_digest ON imap_digests (mailbox, digest);

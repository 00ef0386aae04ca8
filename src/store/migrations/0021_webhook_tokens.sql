-- rebound store, schema 21: the tokens of signed webhook requests already taken
-- (Mailgun signs a timestamp and a one-time token, not the body). A token seen before is
-- refused unless the request is the very same bytes (the provider's retry: the ledger then
-- finds the event a duplicate). `seen_at` (ms) lets old rows be pruned: a token past the
-- timestamp window is refused by its timestamp already.
CREATE TABLE webhook_tokens (
    provider    TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    body_sha256 TEXT    NOT NULL,
    seen_at     INTEGER NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX webhook_tokens_seen_at ON webhook_tokens (seen_at);

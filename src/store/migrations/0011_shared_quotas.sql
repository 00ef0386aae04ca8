-- rebound store, schema 11: rolling-window limits (quotas) and throttling pauses shared
-- by every process on the store.

-- One row per message reserved under a rolling-window limit (named by its spec, e.g.
-- `50000/day`): its send time in microseconds since the Unix epoch. A reservation counts
-- the rows of the window before it and deletes those that have left it; a reserved time
-- nobody used is deleted by the process that reserved it.
CREATE TABLE rate_window_sends (
    name TEXT    NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX rate_window_sends_name_at ON rate_window_sends (name, at);

-- A throttling pause ("slow down" from the relay) that every process sending through the
-- relay (`host:port`) keeps: until when (µs since the Unix epoch) and how many pauses in a
-- row the relay asked for (the back-off doubles with each).
CREATE TABLE rate_pauses (
    relay  TEXT    PRIMARY KEY,
    until  INTEGER NOT NULL,
    streak INTEGER NOT NULL
);

//! The poll loop: UIDL → RETR → detector → policy chain → one store transaction → DELE.

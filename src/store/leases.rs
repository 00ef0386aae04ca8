//! Named leases: one holder at a time for work that must not run twice at once across
//! processes and hosts on one store (a mailbox's poller, [`crate::pop3::poller`]).
//!
//! A holder takes the lease of a name for a while and renews it by its heartbeat; it
//! gives it up when done. A holder that dies stops renewing: once its lease has expired,
//! the next process to ask takes it over. Taking is one upsert, atomic on both backends
//! (SQLite's write lock; PostgreSQL's lock on the conflicting row), so two asking at once
//! never both hold it. The times are the asking process's clock, like the runners' leases
//! ([`Store::join_campaign`]): hosts on one store keep their clocks in step (NTP).

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, Timestamp, millis, q};

/// A lease's row: who holds it, since when, and until when without a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The lease's name.
    pub name: String,
    /// Its holder ([`owner_name`] of the process).
    pub owner: String,
    /// When the holder took it.
    pub acquired_at: Timestamp,
    /// The holder's last heartbeat.
    pub heartbeat_at: Timestamp,
    /// When it lapses without another heartbeat.
    pub expires_at: Timestamp,
}

/// What [`Store::take_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The caller holds the lease now (until its lease runs out or it releases it).
    Yes,
    /// Another holds it: its row (`None` when it was released while we asked twice).
    HeldBy(Option<Lease>),
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Is `owner` (an [`owner_name`]) a process of this host that no longer runs? Only then
/// is it surely dead before its lease expires (a process of another host, or a pid that
/// was given to a new process, counts as alive).
pub fn is_dead_here(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    host == host_name()
        && pid.parse::<u32>().is_ok()
        && pid != std::process::id().to_string()
        && std::fs::metadata("/proc/self").is_ok()
        && std::fs::metadata(format!("/proc/{pid}")).is_err()
}

/// This process's name as a lease holder: `host/pid/random`, different for every call
/// (two holders in one process are two names).
pub fn owner_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = host_name();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{host}/{}/{:08x}", std::process::id(), h.finish() as u32)
}

impl Store {
    /// `owner` takes lease `name` for `lease` from now, when nobody holds it, `owner`
    /// does already (then this renews it) or its holder's lease has expired.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn take_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Taken> {
        let now = Timestamp::now().0;
        let taken = sqlx::query(self.sql.TAKE_LEASE)
            .bind(name)
            .bind(owner)
            .bind(now)
            .bind(now + millis(lease))
            .fetch_optional(self.pool())
            .await
            .map_err(q("TAKE_LEASE"))?;
        if taken.is_some() {
            return Ok(Taken::Yes);
        }
        Ok(Taken::HeldBy(self.lease(name).await?))
    }

    /// `owner` takes lease `name` over from `dead`, a holder known to have died
    /// ([`is_dead_here`]), for `lease` from now. False when `dead` no longer holds it
    /// (another took it first).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn take_lease_from(
        &self,
        name: &str,
        owner: &str,
        dead: &str,
        lease: Duration,
    ) -> Result<bool> {
        let now = Timestamp::now().0;
        Ok(sqlx::query(self.sql.TAKE_LEASE_FROM)
            .bind(name)
            .bind(owner)
            .bind(now)
            .bind(now + millis(lease))
            .bind(dead)
            .execute(self.pool())
            .await
            .map_err(q("TAKE_LEASE_FROM"))?
            .rows_affected()
            > 0)
    }

    /// `owner`'s heartbeat on lease `name`: it holds it for `lease` from now. False when
    /// it no longer holds it (it expired and another took it over, or it was released).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn renew_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<bool> {
        let now = Timestamp::now().0;
        Ok(sqlx::query(self.sql.RENEW_LEASE)
            .bind(name)
            .bind(owner)
            .bind(now)
            .bind(now + millis(lease))
            .execute(self.pool())
            .await
            .map_err(q("RENEW_LEASE"))?
            .rows_affected()
            > 0)
    }

    /// `owner` gives lease `name` up (nothing happens when another holds it).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query(self.sql.RELEASE_LEASE)
            .bind(name)
            .bind(owner)
            .execute(self.pool())
            .await
            .map_err(q("RELEASE_LEASE"))?;
        Ok(())
    }

    /// Lease `name`'s row (an expired one included), if any.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query(self.sql.SELECT_LEASE)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_LEASE"))?;
        row.map(|r| {
            let g = q("reading a lease");
            Ok(Lease {
                name: name.to_owned(),
                owner: r.try_get(0).map_err(g)?,
                acquired_at: Timestamp(r.try_get(1).map_err(g)?),
                heartbeat_at: Timestamp(r.try_get(2).map_err(g)?),
                expires_at: Timestamp(r.try_get(3).map_err(g)?),
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    on_both_backends!(one_holder_at_a_time_and_the_dead_are_taken_over);
    async fn one_holder_at_a_time_and_the_dead_are_taken_over(s: Store) {
        let long = Duration::from_secs(60);
        assert_eq!(s.take_lease("m", "a", long).await.unwrap(), Taken::Yes);
        let first = s.lease("m").await.unwrap().unwrap();
        // Taken again by its holder: renewed, its start kept.
        assert_eq!(s.take_lease("m", "a", long).await.unwrap(), Taken::Yes);
        assert_eq!(
            s.lease("m").await.unwrap().unwrap().acquired_at,
            first.acquired_at
        );
        match s.take_lease("m", "b", long).await.unwrap() {
            Taken::HeldBy(Some(l)) => assert_eq!(l.owner, "a"),
            other => panic!("b took a's lease: {other:?}"),
        }
        // Another name is another lease.
        assert_eq!(s.take_lease("n", "b", long).await.unwrap(), Taken::Yes);
        // b cannot release a's lease; a renews it, then lets it lapse.
        s.release_lease("m", "b").await.unwrap();
        assert!(s.renew_lease("m", "a", Duration::ZERO).await.unwrap());
        assert_eq!(s.take_lease("m", "b", long).await.unwrap(), Taken::Yes);
        // a's heartbeat after the takeover tells it that it lost the lease.
        assert!(!s.renew_lease("m", "a", long).await.unwrap());
        assert_eq!(s.lease("m").await.unwrap().unwrap().owner, "b");
        s.release_lease("m", "b").await.unwrap();
        assert_eq!(s.lease("m").await.unwrap(), None);
        assert_eq!(s.take_lease("m", "a", long).await.unwrap(), Taken::Yes);
    }

    on_both_backends!(a_dead_holder_of_this_host_is_taken_over_at_once);
    async fn a_dead_holder_of_this_host_is_taken_over_at_once(s: Store) {
        // A process of this host that has exited (the child ran and was reaped).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = format!("{}/{pid}/0", host_name());
        assert!(is_dead_here(&dead));
        assert!(!is_dead_here(&owner_name()), "this process is alive");
        assert!(!is_dead_here(&format!("other-host.example/{pid}/0")));
        assert!(!is_dead_here("junk"));
        let long = Duration::from_secs(60);
        assert_eq!(s.take_lease("m", &dead, long).await.unwrap(), Taken::Yes);
        assert!(s.take_lease_from("m", "new", &dead, long).await.unwrap());
        assert_eq!(s.lease("m").await.unwrap().unwrap().owner, "new");
        // Only from the holder named: a second taker finds it gone.
        assert!(!s.take_lease_from("m", "third", &dead, long).await.unwrap());
    }

    on_both_backends!(many_asking_at_once_one_takes_it);
    async fn many_asking_at_once_one_takes_it(s: Store) {
        let tries = (0..8).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    match s
                        .take_lease("m", &format!("o{i}"), Duration::from_secs(60))
                        .await
                    {
                        Err(e) if e.is_busy() => tokio::task::yield_now().await,
                        r => return r.unwrap(),
                    }
                }
            })
        });
        let mut won = 0;
        for t in tries.collect::<Vec<_>>() {
            if t.await.unwrap() == Taken::Yes {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }
}

//! Subscribers: the list itself in the `recipients` table (schema 15), so that a campaign's
//! `recipients.store = "active"` means the subscribers that are not suppressed. An import
//! adds addresses and their names and fields; it never changes a state: a bounced,
//! complained or unsubscribed address stays suppressed however often the list names it.

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, Timestamp, address_key, normalize_address, q};

/// Rows per import transaction (a mailbox pass's commit can go in between).
const IMPORT_CHUNK: usize = 5_000;

/// One subscriber of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The address.
    pub address: String,
    /// A display name.
    pub name: Option<String>,
    /// The list's other columns.
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Addresses new to the store: active subscribers now.
    pub added: u64,
    /// Addresses the store knew (their name and fields updated), active ones and
    /// suppressed ones alike.
    pub known: u64,
    /// Of those, the suppressed ones, which stay suppressed.
    pub kept_suppressed: u64,
    /// Addresses the file named more than once (the last one's name and fields count).
    pub repeated: u64,
}

impl Store {
    /// Adds `subscribers` (see the module docs), a chunk of [`IMPORT_CHUNK`] per
    /// transaction.
    ///
    /// # Errors
    /// [`super::Error::Query`]; the chunks committed before it stay.
    pub async fn import_subscribers(&self, subscribers: &[Subscriber]) -> Result<Imported> {
        // One row per key, the last one of the file (PostgreSQL's upsert cannot update a
        // row twice in one statement).
        let mut last = std::collections::HashMap::with_capacity(subscribers.len());
        for (i, s) in subscribers.iter().enumerate() {
            last.insert(address_key(&s.address), i);
        }
        let mut out = Imported {
            repeated: (subscribers.len() - last.len()) as u64,
            ..Imported::default()
        };
        let mut rows: Vec<(String, usize)> = last.into_iter().collect();
        rows.sort_unstable_by_key(|(_, i)| *i);
        for chunk in rows.chunks(IMPORT_CHUNK) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(key, i)| {
                    let s = &subscribers[*i];
                    let mut name = s.name.clone();
                    if let Some(n) = name.as_mut() {
                        super::nul_free(n);
                    }
                    let fields = s.fields.as_ref().map(|f| {
                        let mut f = serde_json::Value::Object(f.clone());
                        strings_nul_free(&mut f);
                        f.to_string()
                    });
                    serde_json::json!([normalize_address(&s.address), key, name, fields])
                })
                .collect();
            let mut tx = self.begin().await?;
            let counts = sqlx::query(self.sql.COUNT_KNOWN_KEYS)
                .bind(serde_json::to_string(&keys).unwrap_or_default())
                .fetch_one(&mut *tx)
                .await
                .map_err(q("COUNT_KNOWN_KEYS"))?;
            let known: i64 = counts.try_get(0).map_err(q("reading counts"))?;
            let suppressed: i64 = counts.try_get(1).map_err(q("reading counts"))?;
            sqlx::query(self.sql.IMPORT_SUBSCRIBERS)
                .bind(Timestamp::now().0)
                .bind(serde_json::Value::Array(values).to_string())
                .execute(&mut *tx)
                .await
                .map_err(q("IMPORT_SUBSCRIBERS"))?;
            tx.commit().await.map_err(q("commit"))?;
            out.known += known as u64;
            out.kept_suppressed += suppressed as u64;
            out.added += chunk.len() as u64 - known as u64;
        }
        Ok(out)
    }
}

/// Every string of `v` (keys too) without NUL, as [`super::nul_free`].
fn strings_nul_free(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => super::nul_free(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(strings_nul_free),
        serde_json::Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                *o = std::mem::take(o)
                    .into_iter()
                    .map(|(mut k, v)| {
                        super::nul_free(&mut k);
                        (k, v)
                    })
                    .collect();
            }
            o.values_mut().for_each(strings_nul_free);
        }
        _ => {}
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::store::RecipientState;

    fn sub(address: &str, name: Option<&str>) -> Subscriber {
        Subscriber {
            address: address.into(),
            name: name.map(Into::into),
            fields: None,
        }
    }

    on_both_backends!(import_adds_subscribers_and_keeps_suppressions);
    async fn import_adds_subscribers_and_keeps_suppressions(s: Store) {
        s.unsubscribe("gone@example.com", None, "one-click")
            .await
            .unwrap();
        let mut fields = serde_json::Map::new();
        fields.insert("city".into(), "Kyoto".into());
        let list = vec![
            Subscriber {
                fields: Some(fields),
                ..sub("Ann@Example.com", Some("Ann"))
            },
            sub("gone@example.com", Some("Gone")),
            sub("bob@example.com", None),
            sub("ann@example.com", Some("Ann B.")),
        ];
        let got = s.import_subscribers(&list).await.unwrap();
        assert_eq!(
            got,
            Imported {
                added: 2,
                known: 1,
                kept_suppressed: 1,
                repeated: 1
            }
        );
        let active = s.recipients(Some(RecipientState::Active)).await.unwrap();
        let mut active: Vec<&str> = active.iter().map(|r| r.address.as_str()).collect();
        active.sort_unstable();
        assert_eq!(active, ["ann@example.com", "bob@example.com"]);
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM recipients WHERE address_key = 'ann@example.com'")
                .fetch_one(s.pool())
                .await
                .unwrap();
        assert_eq!(
            name.as_deref(),
            Some("Ann B."),
            "the last row of an address counts"
        );
        let gone = s.recipient("gone@example.com").await.unwrap().unwrap();
        assert_eq!(gone.state, RecipientState::Unsubscribed);
        // Again: everything known now, nothing reactivated.
        let again = s.import_subscribers(&list[1..3]).await.unwrap();
        assert_eq!((again.added, again.known, again.kept_suppressed), (0, 2, 1));
        // A campaign from the store takes the active subscribers only.
        let new = crate::store::campaigns::NewCampaign {
            name: "c".into(),
            from: "news@example.org".into(),
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
        };
        let addresses = s.recipients(Some(RecipientState::Active)).await.unwrap();
        let (c, _) = s
            .create_campaign(&new, addresses.iter().map(|r| r.address.as_str()))
            .await
            .unwrap();
        assert_eq!(s.open_sends(c.id).await.unwrap().pending, 2);
    }

    on_both_backends!(import_records_text_with_a_nul);
    async fn import_records_text_with_a_nul(s: Store) {
        let mut fields = serde_json::Map::new();
        fields.insert("ci\0ty".into(), "Ky\0oto".into());
        let list = [Subscriber {
            fields: Some(fields),
            ..sub("nul@example.com", Some("A\0nn"))
        }];
        assert_eq!(s.import_subscribers(&list).await.unwrap().added, 1);
        let (name, fields): (Option<String>, Option<String>) = sqlx::query_as(
            "SELECT name, fields FROM recipients WHERE address_key = 'nul@example.com'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("A\u{FFFD}nn"));
        let fields: serde_json::Value = serde_json::from_str(&fields.unwrap()).unwrap();
        assert_eq!(
            fields,
            serde_json::json!({ "ci\u{FFFD}ty": "Ky\u{FFFD}oto" })
        );
    }
}

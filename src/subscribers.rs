//! The subscriber list in and the suppression list out, as CSV (or JSON) for the tool
//! that owns the list: `rebound recipients import` / `export`, `POST /recipients/import`,
//! `GET /recipients/export`.
//!
//! An import file has a header row naming an `address` (or `email`) column and optionally
//! `name`; every other column goes into the subscriber's fields. A file whose first row
//! names no such column has none: its columns are address, then name. Rows without an
//! address that has an `@` are reported by line and left out; the rest is imported.

use serde::Serialize;

use crate::store::subscribers::Subscriber;
use crate::store::{Recipient, RecipientState, Store};

/// A row of an import file that was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    /// Its line in the file, from 1.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The columns a header row names: address, name, and the others by their names.
type Columns = (usize, Option<usize>, Vec<(usize, String)>);

/// Reads an import file (see the module docs).
pub fn parse_csv(bytes: &[u8]) -> (Vec<Subscriber>, Vec<BadRow>) {
    // CRLF as LF: the reader counts a CR and its LF as two ends of line, which would put
    // the line numbers of a CRLF file's rows one off.
    let text: Vec<u8>;
    let bytes = if bytes.windows(2).any(|w| w == b"\r\n") {
        text = bytes
            .iter()
            .enumerate()
            .filter(|&(i, b)| !(*b == b'\r' && bytes.get(i + 1) == Some(&b'\n')))
            .map(|(_, b)| *b)
            .collect();
        &text[..]
    } else {
        bytes
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut subscribers = Vec::new();
    let mut bad = Vec::new();
    let mut columns: Option<Columns> = None;
    let mut first = true;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bad.push(BadRow {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if first {
            first = false;
            let named = |names: &[&str]| {
                record
                    .iter()
                    .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
            };
            if let Some(address) = named(&["address", "email", "e-mail"]) {
                let name = named(&["name"]);
                let others = record
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != address && Some(*i) != name)
                    .map(|(i, c)| (i, c.to_owned()))
                    .collect();
                columns = Some((address, name, others));
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (address_at, name_at) = columns.as_ref().map_or((0, Some(1)), |c| (c.0, c.1));
        let address = record.get(address_at).unwrap_or_default();
        if !address.contains('@') || address.contains(char::is_whitespace) {
            bad.push(BadRow {
                line,
                reason: format!("{address:?} is not an address"),
            });
            continue;
        }
        let name = name_at
            .and_then(|i| record.get(i))
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let fields = columns.as_ref().and_then(|(_, _, others)| {
            let map: serde_json::Map<String, serde_json::Value> = others
                .iter()
                .filter_map(|(i, key)| {
                    let value = record.get(*i).filter(|v| !v.is_empty())?;
                    Some((key.clone(), value.into()))
                })
                .collect();
            (!map.is_empty()).then_some(map)
        });
        subscribers.push(Subscriber {
            address: address.to_owned(),
            name,
            fields,
        });
    }
    (subscribers, bad)
}

/// The recipients of an export: the suppressed ones (bounced, complained,
/// unsubscribed) when `suppressed`, else all.
///
/// # Errors
/// [`crate::store::Error`].
pub async fn export(store: &Store, suppressed: bool) -> crate::store::Result<Vec<Recipient>> {
    if !suppressed {
        return store.recipients(None).await;
    }
    let mut out = Vec::new();
    for state in RecipientState::ALL
        .iter()
        .filter(|s| **s != RecipientState::Active)
    {
        out.extend(store.recipients(Some(*state)).await?);
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Recipients as CSV: address, state, when it became so, the last reason and status,
/// and the counts.
pub fn to_csv(recipients: &[Recipient]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "address",
        "state",
        "state_changed_at",
        "last_reason",
        "last_status",
        "hard_count",
        "soft_count",
        "complaint_count",
    ]);
    for r in recipients {
        let changed = r
            .state_changed_at
            .map(|t| t.to_string())
            .unwrap_or_default();
        let _ = w.write_record([
            r.address.as_str(),
            r.state.as_str(),
            &changed,
            r.last_reason.as_deref().unwrap_or_default(),
            r.last_status.as_deref().unwrap_or_default(),
            &r.hard_count.to_string(),
            &r.soft_count.to_string(),
            &r.complaint_count.to_string(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_header_row_names_the_columns() {
        let (subs, bad) = parse_csv(
            b"Name,Email,City\r\nAnn,ann@example.com,Kyoto\r\n\"B, Bob\",bob@example.com,\r\n,not-an-address,x\r\n",
        );
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].name.as_deref(), Some("Ann"));
        assert_eq!(
            subs[0].fields.as_ref().and_then(|f| f.get("City")),
            Some(&serde_json::Value::from("Kyoto"))
        );
        assert_eq!(subs[1].name.as_deref(), Some("B, Bob"));
        assert_eq!(subs[1].fields, None);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
    }

    #[test]
    fn without_a_header_the_columns_are_address_and_name() {
        let (subs, bad) =
            parse_csv(b"ann@example.com,Ann\nbob@example.com\n\n  cy@example.com , Cy \n");
        let got: Vec<(&str, Option<&str>)> = subs
            .iter()
            .map(|s| (s.address.as_str(), s.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("ann@example.com", Some("Ann")),
                ("bob@example.com", None),
                ("cy@example.com", Some("Cy"))
            ]
        );
        assert!(bad.is_empty(), "{bad:?}");
    }
}

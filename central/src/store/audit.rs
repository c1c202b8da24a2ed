//! The audit log: append-only and tamper-evident.
//!
//! Every entry carries `hash = BLAKE3(prev_hash ‖ the entry's fields)`, chaining it to the
//! one before (the first to 32 zero bytes), so editing, removing or reordering a row
//! breaks the chain at that row ([`Registry::verify_audit`]; `taplink-central audit
//! verify`). Actors are stable ids (`user:<id>`, `token:<id>`, `hub_staff:<name>`,
//! `hub:<id>`…), never names: deleting a user erases their name and keeps history
//! verifiable.

use automerge::ChangeHash;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::note::Via;
use taplink_sync_proto::wire::DocId;

use super::{Registry, RegistryError, sql};
use crate::timefmt::to_unix_ms;

/// What happened, for one new entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// When it was made, Unix ms (for a hub's offline change: when it was made there).
    pub at_ms: i64,
    /// Who: `user:<id>`, `token:<id>`, `admin_token`, `hub_staff:<name>`, `kiosk:<id>`,
    /// `device:<id>`, `central`.
    pub actor: String,
    /// Through what.
    pub via: Via,
    /// Where: `central`, `hub:<id>`, or `device:<actor>` for an unknown writer.
    pub origin: String,
    /// The venue it concerns, if one.
    pub venue: Option<VenueId>,
    /// What kind of change: `document.change`, `user.create`, `token.revoke`, ….
    pub action: String,
    /// What exactly (the operations as JSON, the fields changed, …).
    pub detail: serde_json::Value,
    /// The document heads after it (empty for registry changes).
    pub heads: Vec<ChangeHash>,
    /// Why it is suspicious, if it is (an author the venue's roster does not allow).
    pub flag: Option<String>,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Its place in the log, from 1.
    pub seq: i64,
    /// When it was made, Unix ms.
    pub at_ms: i64,
    /// When central recorded it, Unix ms.
    pub recorded_ms: i64,
    /// Who.
    pub actor: String,
    /// Through what (`api`, `cli`, `web`, `system`).
    pub via: String,
    /// Where.
    pub origin: String,
    /// The venue.
    pub venue: Option<String>,
    /// What kind.
    pub action: String,
    /// What exactly.
    pub detail: serde_json::Value,
    /// Heads after it.
    pub heads: Vec<String>,
    /// Why it is flagged.
    pub flag: Option<String>,
    /// The entry's chain hash, hex.
    pub hash: String,
}

/// Which entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this venue's.
    pub venue: Option<VenueId>,
    /// Only these venues' (and, if `None`, every entry); for scoped callers.
    pub venues: Option<Vec<VenueId>>,
    /// Only this actor's (`user:<id>`, …).
    pub actor: Option<String>,
    /// Made at or after, Unix ms.
    pub from_ms: Option<i64>,
    /// Made before, Unix ms.
    pub to_ms: Option<i64>,
    /// Entries older than this `seq` (the previous page's cursor).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// What [`Registry::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every entry chains to the one before.
    Intact {
        /// How many entries.
        entries: u64,
    },
    /// The chain breaks at this entry: it, or one before it, was altered or removed.
    Broken {
        /// The first entry whose hash does not follow.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

const VIA_NAMES: [(Via, &str); 4] = [
    (Via::Api, "api"),
    (Via::Cli, "cli"),
    (Via::Web, "web"),
    (Via::System, "system"),
];

fn via_name(via: Via) -> &'static str {
    VIA_NAMES
        .iter()
        .find(|(v, _)| *v == via)
        .map_or("system", |(_, n)| n)
}

/// The fields an entry's hash covers, in order.
struct Fields<'a> {
    seq: i64,
    at_ms: i64,
    recorded_ms: i64,
    actor: &'a str,
    via: &'a str,
    origin: &'a str,
    venue: Option<&'a str>,
    action: &'a str,
    detail_json: &'a str,
    heads_json: &'a str,
    flag: Option<&'a str>,
}

fn chain_hash(prev: &[u8; 32], f: &Fields<'_>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("taplink audit log v1");
    h.update(prev);
    for n in [f.seq, f.at_ms, f.recorded_ms] {
        h.update(&n.to_le_bytes());
    }
    for text in [
        Some(f.actor),
        Some(f.via),
        Some(f.origin),
        f.venue,
        Some(f.action),
        Some(f.detail_json),
        Some(f.heads_json),
        f.flag,
    ] {
        match text {
            None => {
                h.update(&[0]);
            }
            Some(t) => {
                h.update(&[1]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
        }
    }
    *h.finalize().as_bytes()
}

fn doc_key(doc: DocId) -> String {
    doc.to_string()
}

impl Registry {
    /// The heads of `doc` up to which its changes are in the log.
    pub fn audit_cursor(&self, doc: DocId) -> Result<Vec<ChangeHash>, RegistryError> {
        let text: Option<String> = self
            .lock()
            .query_row(
                "SELECT heads_json FROM audit_cursors WHERE doc = ?1",
                params![doc_key(doc)],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql("read the audit cursor"))?;
        let Some(text) = text else {
            return Ok(Vec::new());
        };
        let texts: Vec<String> =
            serde_json::from_str(&text).map_err(|e| RegistryError::Corrupt {
                what: "audit cursor",
                reason: e.to_string(),
            })?;
        texts
            .iter()
            .map(|t| {
                t.parse().map_err(
                    |e: automerge::ParseChangeHashError| RegistryError::Corrupt {
                        what: "audit cursor",
                        reason: e.to_string(),
                    },
                )
            })
            .collect()
    }

    /// Append `records` (changes of `doc`) and move `doc`'s cursor to `heads`, in one
    /// transaction.
    pub fn append_audit(
        &self,
        doc: DocId,
        records: &[AuditRecord],
        heads: &[ChangeHash],
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin an audit append"))?;
        for record in records {
            append_one(&tx, record, now)?;
        }
        let heads_json = serde_json::to_string(&crate::audit::heads_text(heads)).map_err(|e| {
            RegistryError::Corrupt {
                what: "document heads",
                reason: e.to_string(),
            }
        })?;
        tx.execute(
            "INSERT INTO audit_cursors (doc, heads_json) VALUES (?1, ?2)
             ON CONFLICT (doc) DO UPDATE SET heads_json = excluded.heads_json",
            params![doc_key(doc), heads_json],
        )
        .map_err(sql("move the audit cursor"))?;
        tx.commit().map_err(sql("commit an audit append"))
    }

    /// Append one record of a registry change (a user, a token, a venue's tags, …).
    pub fn record_audit(
        &self,
        record: &AuditRecord,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin an audit append"))?;
        append_one(&tx, record, now)?;
        tx.commit().map_err(sql("commit an audit append"))
    }

    /// Entries matching `query`, newest first.
    pub fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, RegistryError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |clause: &str, value: rusqlite::types::Value, clauses: &mut Vec<String>| {
            args.push(value);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(v) = query.venue {
            arg("venue_id = ?", v.to_string().into(), &mut clauses);
        }
        if let Some(a) = &query.actor {
            arg("actor = ?", a.clone().into(), &mut clauses);
        }
        if let Some(from) = query.from_ms {
            arg("at_ms >= ?", from.into(), &mut clauses);
        }
        if let Some(to) = query.to_ms {
            arg("at_ms < ?", to.into(), &mut clauses);
        }
        if let Some(before) = query.before_seq {
            arg("seq < ?", before.into(), &mut clauses);
        }
        if let Some(venues) = &query.venues {
            let list =
                serde_json::to_string(&venues.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .unwrap_or_else(|_| "[]".to_owned());
            arg(
                "venue_id IN (SELECT value FROM json_each(?))",
                list.into(),
                &mut clauses,
            );
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let sql_text = format!(
            "SELECT seq, at_ms, recorded_ms, actor, via, origin, venue_id, action, detail_json,
                    heads_json, flag, hash
             FROM audit {filter} ORDER BY seq DESC LIMIT {limit}"
        );
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql_text).map_err(sql("list the audit log"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |row| {
                let detail: String = row.get(8)?;
                let heads: String = row.get(9)?;
                let hash: Vec<u8> = row.get(11)?;
                Ok(AuditEntry {
                    seq: row.get(0)?,
                    at_ms: row.get(1)?,
                    recorded_ms: row.get(2)?,
                    actor: row.get(3)?,
                    via: row.get(4)?,
                    origin: row.get(5)?,
                    venue: row.get(6)?,
                    action: row.get(7)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    heads: serde_json::from_str(&heads).unwrap_or_default(),
                    flag: row.get(10)?,
                    hash: data_encoding::HEXLOWER.encode(&hash),
                })
            })
            .map_err(sql("list the audit log"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list the audit log"))
    }

    /// Walk the whole log and check every entry's hash against the one before.
    pub fn verify_audit(&self) -> Result<AuditVerdict, RegistryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, at_ms, recorded_ms, actor, via, origin, venue_id, action,
                        detail_json, heads_json, flag, prev_hash, hash
                 FROM audit ORDER BY seq",
            )
            .map_err(sql("verify the audit log"))?;
        let mut rows = stmt.query([]).map_err(sql("verify the audit log"))?;
        let mut prev = [0u8; 32];
        let mut expected_seq = 1i64;
        let mut count = 0u64;
        while let Some(row) = rows.next().map_err(sql("verify the audit log"))? {
            let get = |e: rusqlite::Error| RegistryError::Sqlite {
                op: "verify the audit log",
                source: e,
            };
            let seq: i64 = row.get(0).map_err(get)?;
            let texts: Vec<Option<String>> = (3..=10)
                .map(|i| row.get::<_, Option<String>>(i))
                .collect::<Result<_, _>>()
                .map_err(get)?;
            let stored_prev: Vec<u8> = row.get(11).map_err(get)?;
            let stored: Vec<u8> = row.get(12).map_err(get)?;
            if seq != expected_seq {
                return Ok(AuditVerdict::Broken {
                    seq,
                    reason: format!("entry {expected_seq} is missing"),
                });
            }
            if stored_prev != prev {
                return Ok(AuditVerdict::Broken {
                    seq,
                    reason: "it does not point at the entry before it".to_owned(),
                });
            }
            let text = |i: usize| texts[i].as_deref();
            let fields = Fields {
                seq,
                at_ms: row.get(1).map_err(get)?,
                recorded_ms: row.get(2).map_err(get)?,
                actor: text(0).unwrap_or_default(),
                via: text(1).unwrap_or_default(),
                origin: text(2).unwrap_or_default(),
                venue: text(3),
                action: text(4).unwrap_or_default(),
                detail_json: text(5).unwrap_or_default(),
                heads_json: text(6).unwrap_or_default(),
                flag: text(7),
            };
            let hash = chain_hash(&prev, &fields);
            if stored != hash {
                return Ok(AuditVerdict::Broken {
                    seq,
                    reason: "its content does not match its hash (the entry was edited)".to_owned(),
                });
            }
            prev = hash;
            expected_seq += 1;
            count += 1;
        }
        Ok(AuditVerdict::Intact { entries: count })
    }

    /// How many entries the log holds.
    pub fn audit_len(&self) -> Result<u64, RegistryError> {
        self.lock()
            .query_row("SELECT count(*) FROM audit", [], |row| row.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(sql("count the audit log"))
    }
}

fn append_one(
    tx: &rusqlite::Transaction<'_>,
    record: &AuditRecord,
    now: DateTime<Utc>,
) -> Result<(), RegistryError> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql("read the audit log's last entry"))?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (
            seq + 1,
            <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| RegistryError::Corrupt {
                what: "audit hash",
                reason: "not 32 bytes".to_owned(),
            })?,
        ),
        None => (1, [0u8; 32]),
    };
    let detail_json = record.detail.to_string();
    let heads_json = serde_json::Value::from(crate::audit::heads_text(&record.heads)).to_string();
    let venue = record.venue.map(|v| v.to_string());
    let recorded_ms = to_unix_ms(now);
    let fields = Fields {
        seq,
        at_ms: record.at_ms,
        recorded_ms,
        actor: &record.actor,
        via: via_name(record.via),
        origin: &record.origin,
        venue: venue.as_deref(),
        action: &record.action,
        detail_json: &detail_json,
        heads_json: &heads_json,
        flag: record.flag.as_deref(),
    };
    let hash = chain_hash(&prev, &fields);
    tx.execute(
        "INSERT INTO audit (seq, at_ms, recorded_ms, actor, via, origin, venue_id, action,
                            detail_json, heads_json, flag, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            seq,
            record.at_ms,
            recorded_ms,
            record.actor,
            fields.via,
            record.origin,
            venue,
            record.action,
            detail_json,
            heads_json,
            record.flag,
            prev.as_slice(),
            hash.as_slice(),
        ],
    )
    .map_err(sql("append to the audit log"))?;
    Ok(())
}

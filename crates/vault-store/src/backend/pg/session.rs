//! Sessions on a PostgreSQL vault: a read session is a `REPEATABLE READ` snapshot on a
//! connection of its own; the write session holds the vault's advisory lock on its connection
//! and commits each write before it returns. Index files are read by block, outside any session.

use std::time::Instant;

use postgres::{Client, GenericClient, Transaction};

use super::{Pool, PostgresLocation, db_error};
use crate::backend::{
    Appended, CHECK_LEN, Cursor, Frames, IndexFile, IndexWriter, ReadOutcome, ReadSession,
    RecordAt, RecordSource, StoredFrame, Tail, Visit, WriteSession, check_of,
};
use crate::sync::{Arc, Mutex, lock};
use crate::{Error, Result};

/// Bytes per stored block of an index file.
const INDEX_BLOCK: usize = 1 << 20;

/// The next log incarnation number.
pub(super) fn next_incarnation(
    t: &mut impl GenericClient,
    schema: &str,
) -> std::result::Result<i64, postgres::Error> {
    Ok(
        t.query_one(&format!("SELECT nextval('{schema}.incarnations')"), &[])?
            .get(0),
    )
}

/// The current log: its key epoch, incarnation and last frame's number (`None`: no vault).
pub(super) fn log_end(
    c: &mut impl GenericClient,
    schema: &str,
) -> std::result::Result<Option<(i64, i64, i64)>, postgres::Error> {
    let Some(row) = c.query_opt(
        &format!(
            "SELECT l.epoch, l.incarnation,
                    (SELECT coalesce(max(seq), 0) FROM {schema}.frames f
                      WHERE f.incarnation = l.incarnation)
               FROM {schema}.log l WHERE l.id = 1"
        ),
        &[],
    )?
    else {
        return Ok(None);
    };
    Ok(Some((row.get(0), row.get(1), row.get(2))))
}

/// The log's key epoch against the one the reader holds keys for: a later one is a rotation by
/// another client (the reader opens again); an earlier one never happens (a rotation switches
/// header and log in one transaction), so it is damage or tampering, not a reason to retry.
pub(super) fn check_epoch(epoch: i64, key_epoch: u32, at: &PostgresLocation) -> Result<()> {
    match epoch.cmp(&i64::from(key_epoch)) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Error::Rekeyed),
        std::cmp::Ordering::Less => Err(Error::integrity(
            at.shown.clone(),
            format!("the log is of key epoch {epoch}, older than the header's {key_epoch}"),
        )),
    }
}

/// The header bytes.
pub(super) fn header(
    c: &mut impl GenericClient,
    schema: &str,
    at: &PostgresLocation,
) -> Result<Vec<u8>> {
    let exists: Option<String> = c
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{schema}.header")],
        )
        .map_err(|e| db_error("reading", at, e))?
        .get(0);
    if exists.is_none() {
        return Err(Error::NoVault(at.shown.clone()));
    }
    let version: i64 = c
        .query_opt(
            &format!("SELECT value::bigint FROM {schema}.meta WHERE key = 'schema_version'"),
            &[],
        )
        .map_err(|e| db_error("reading", at, e))?
        .map_or(0, |r| r.get(0));
    if version > super::schema::version() as i64 {
        return Err(Error::Format(vault_format::Error::UnsupportedVersion {
            object: "PostgreSQL vault schema",
            found: u16::try_from(version).unwrap_or(u16::MAX),
            max: super::schema::version() as u16,
        }));
    }
    c.query_opt(
        &format!("SELECT bytes FROM {schema}.header WHERE id = 1"),
        &[],
    )
    .map_err(|e| db_error("reading", at, e))?
    .map(|r| r.get(0))
    .ok_or_else(|| Error::NoVault(at.shown.clone()))
}

/// A session: its own connection, and for the write session the advisory lock held on it.
pub(crate) struct PgSession {
    pool: Arc<Pool>,
    schema: String,
    client: Mutex<Option<Client>>,
    writer: bool,
}

impl PgSession {
    /// Begins a read session (the vault's advisory lock shared, and a `REPEATABLE READ`
    /// snapshot) or the write session (the lock exclusive), waiting for the lock until
    /// `deadline`: as with the file backend's lock file, readers and the writer exclude each
    /// other, and the server releases a lock whose client died.
    pub(super) fn begin(
        pool: Arc<Pool>,
        schema: String,
        writer: bool,
        deadline: Instant,
    ) -> Result<Self> {
        let mut c = pool.take()?;
        let at = pool.location.clone();
        let err = |e| db_error("starting a session on", &at, e);
        let take = if writer {
            "pg_advisory_lock($1)"
        } else {
            "pg_advisory_lock_shared($1)"
        };
        let start = Instant::now();
        // Waiting in the server queues the sessions fairly (polling with backoff did not: a
        // writer could wait 0.7 s behind luckier ones); `lock_timeout`, set in the same round
        // trip (and so for the session's statements too), bounds the wait.
        let wait_ms = deadline
            .saturating_duration_since(start)
            .as_millis()
            .max(1)
            .to_string();
        let got = c.query_one(
            &format!(
                "WITH t AS (SELECT set_config('lock_timeout', $2, false)) SELECT {take} FROM t"
            ),
            &[&pool.lock_key, &wait_ms],
        );
        match got {
            Ok(_) => {}
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                pool.give(c);
                return Err(Error::Busy {
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            Err(e) => return Err(err(e)),
        }
        let session = Self {
            pool,
            schema,
            client: Mutex::new(Some(c)),
            writer,
        };
        if !writer {
            session.with("starting a session on", |c| {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            })?;
        }
        Ok(session)
    }

    fn at(&self) -> &PostgresLocation {
        &self.pool.location
    }

    /// Runs `f` on the session's connection.
    fn with<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Client) -> std::result::Result<R, postgres::Error>,
    ) -> Result<R> {
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        f(c).map_err(|e| db_error(op, self.at(), e))
    }

    /// Runs `f` in a transaction of its own on the write session's connection, committed
    /// (durable) before this returns; rolled back on any error.
    fn in_transaction<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        let mut t = c.transaction().map_err(|e| db_error(op, self.at(), e))?;
        let r = f(&mut t)?;
        t.commit().map_err(|e| db_error(op, self.at(), e))?;
        Ok(r)
    }

    /// The current log's epoch and incarnation, refusing another epoch than `key_epoch`.
    fn current(&self, c: &mut impl GenericClient, key_epoch: u32) -> Result<(i64, i64)> {
        let end = log_end(c, &self.schema).map_err(|e| db_error("reading", self.at(), e))?;
        let Some((epoch, incarnation, last)) = end else {
            return Err(Error::NoVault(self.at().shown.clone()));
        };
        check_epoch(epoch, key_epoch, self.at())?;
        Ok((incarnation, last))
    }

    /// Whether the log (`incarnation`) still holds what `at` consumed.
    fn holds(&self, c: &mut impl GenericClient, incarnation: i64, at: &Cursor) -> Result<bool> {
        if at.offset() == 0 || at.hint() != incarnation as u64 {
            return Ok(false);
        }
        let body: Option<Vec<u8>> = c
            .query_opt(
                &format!(
                    "SELECT substring(body from greatest(length(body) - {CHECK_LEN} + 1, 1))
                       FROM {s}.frames WHERE incarnation = $1 AND seq = $2",
                    s = self.schema
                ),
                &[&incarnation, &(at.offset() as i64)],
            )
            .map_err(|e| db_error("reading", self.at(), e))?
            .map(|r| r.get(0));
        Ok(body.is_some_and(|tail| check_of(&tail) == *at.check()))
    }

    /// Produces a new log's frames under a fresh incarnation, in transaction `t`; the cursor
    /// after each.
    fn write_frames(
        &self,
        frames: &mut Frames<'_>,
        t: &mut Transaction<'_>,
    ) -> Result<(i64, Vec<Cursor>)> {
        let incarnation =
            next_incarnation(t, &self.schema).map_err(|e| db_error("writing", self.at(), e))?;
        let insert = format!(
            "INSERT INTO {}.frames (incarnation, seq, body) VALUES ($1, $2, $3)",
            self.schema
        );
        let mut ends = Vec::new();
        let source = TxSource {
            session: self,
            t: Mutex::new(t),
        };
        loop {
            let Some(frame) = frames(&source) else {
                break;
            };
            let frame = frame?;
            let seq = ends.len() as i64 + 1;
            lock(&source.t)
                .execute(&insert, &[&incarnation, &seq, &frame])
                .map_err(|e| db_error("writing", self.at(), e))?;
            ends.push(Cursor::after(incarnation as u64, seq as u64, &frame));
        }
        if ends.is_empty() {
            return Err(Error::invalid("log", "a log needs at least one frame"));
        }
        Ok((incarnation, ends))
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let Some(mut c) = lock(&self.client).take() else {
            return;
        };
        let ended = if self.writer {
            c.query_one("SELECT pg_advisory_unlock($1)", &[&self.pool.lock_key])
                .map(drop)
        } else {
            c.batch_execute("ROLLBACK").and_then(|()| {
                c.query_one(
                    "SELECT pg_advisory_unlock_shared($1)",
                    &[&self.pool.lock_key],
                )
                .map(drop)
            })
        };
        // A connection whose session could not be ended cleanly is not reused (closing it
        // ends the session, and releases the lock, on the server).
        if ended.is_ok() {
            self.pool.give(c);
        }
    }
}

/// The record at `at` in frame `at.frame_end` of `incarnation`, read in `c`.
fn record(
    c: &mut impl GenericClient,
    schema: &str,
    incarnation: i64,
    at: RecordAt,
    shown: &PostgresLocation,
) -> Result<Vec<u8>> {
    let bytes: Option<Vec<u8>> = if at.len <= at.back {
        c.query_opt(
            &format!(
                "SELECT substring(body from length(body) - $3 + 1 for $4) FROM {schema}.frames
                  WHERE incarnation = $1 AND seq = $2 AND length(body) >= $3"
            ),
            &[
                &incarnation,
                &(at.frame_end as i64),
                &(at.back as i32),
                &(at.len as i32),
            ],
        )
        .map_err(|e| db_error("reading", shown, e))?
        .map(|r| r.get(0))
    } else {
        None
    };
    bytes.filter(|b| b.len() == at.len as usize).ok_or_else(|| {
        Error::integrity(
            shown.shown.clone(),
            format!(
                "no record of {} bytes {} bytes before the end of frame {}",
                at.len, at.back, at.frame_end
            ),
        )
    })
}

impl RecordSource for PgSession {
    fn read_record(&self, key_epoch: u32, at: RecordAt) -> Result<Vec<u8>> {
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        let (incarnation, _) = self.current(c, key_epoch)?;
        record(c, &self.schema, incarnation, at, self.at())
    }
}

/// The old log, read inside the transaction that writes the new one.
struct TxSource<'s, 't, 'c> {
    session: &'s PgSession,
    t: Mutex<&'t mut Transaction<'c>>,
}

impl RecordSource for TxSource<'_, '_, '_> {
    fn read_record(&self, key_epoch: u32, at: RecordAt) -> Result<Vec<u8>> {
        let mut t = lock(&self.t);
        let (incarnation, _) = self.session.current(&mut **t, key_epoch)?;
        record(
            &mut **t,
            &self.session.schema,
            incarnation,
            at,
            self.session.at(),
        )
    }
}

impl ReadSession for PgSession {
    fn header(&self) -> Result<Vec<u8>> {
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        header(c, &self.schema, self.at())
    }

    fn read(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        let (incarnation, _) = self.current(c, key_epoch)?;
        let reset = !self.holds(c, incarnation, since)?;
        let start = if reset { 0 } else { since.offset() as i64 };
        let mut end = if reset { Cursor::START } else { *since };
        // Frames whole, one at a time, as the server sends them: memory stays one frame.
        let query = format!(
            "SELECT seq, body FROM {}.frames WHERE incarnation = $1 AND seq > $2 ORDER BY seq",
            self.schema
        );
        let mut rows = c
            .query_raw(
                &query,
                [&incarnation as &dyn postgres::types::ToSql, &start],
            )
            .map_err(|e| db_error("reading", self.at(), e))?;
        // A stored frame is whole (a row is written in one transaction): a frame that does
        // not authenticate is damage, never a torn write.
        let mut tail = Tail::Clean;
        use postgres::fallible_iterator::FallibleIterator;
        while let Some(row) = rows.next().map_err(|e| db_error("reading", self.at(), e))? {
            let seq: i64 = row.get(0);
            let body: Vec<u8> = row.get(1);
            let pos = Cursor::after(incarnation as u64, seq as u64, &body);
            match visit(StoredFrame {
                body,
                end: pos,
                from_start: reset,
            })? {
                Visit::Continue => end = pos,
                Visit::Stop => {
                    tail = Tail::Damaged;
                    break;
                }
                Visit::Abandon => break,
            }
        }
        Ok(ReadOutcome { reset, end, tail })
    }

    fn open_index(&self, key_epoch: u32) -> Result<Option<Box<dyn IndexFile>>> {
        let found: Option<(i64, i64)> = self.with("reading", |c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT i.id, i.len FROM {s}.index_of o JOIN {s}.indexes i ON i.id = o.id
                      WHERE o.epoch = $1",
                    s = self.schema
                ),
                &[&i64::from(key_epoch)],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })?;
        Ok(found.map(|(id, len)| {
            Box::new(PgIndex {
                pool: self.pool.clone(),
                schema: self.schema.clone(),
                id,
                len: len as u64,
            }) as Box<dyn IndexFile>
        }))
    }
}

impl WriteSession for PgSession {
    fn append(&mut self, key_epoch: u32, expected: &Cursor, frame: &[u8]) -> Result<Appended> {
        let seq = expected.offset() as i64 + 1;
        let incarnation = expected.hint() as i64;
        // One statement, committed on its own: the frame goes in only if the log is still of
        // `key_epoch` and of the cursor's incarnation, and its last frame is the cursor's (by
        // number and check bytes). Two writers racing past the advisory lock both see the same
        // last frame; the primary key lets one of them in. The log row is share-locked, so a
        // replacement of the log (which updates it) is either wholly before the insert, which
        // then finds another incarnation, or wholly after it.
        let inserted = self.with("appending to", |c| {
            let r = c.execute(
                &format!(
                    "INSERT INTO {s}.frames (incarnation, seq, body)
                     SELECT l.incarnation, $3::bigint, $4::bytea FROM {s}.log l
                      WHERE l.id = 1 AND l.epoch = $1::bigint AND l.incarnation = $2::bigint
                        AND (SELECT coalesce(max(seq), 0) FROM {s}.frames f
                              WHERE f.incarnation = l.incarnation) = $3::bigint - 1
                        AND (SELECT substring(body from greatest(length(body) - {CHECK_LEN} + 1, 1))
                               FROM {s}.frames f
                              WHERE f.incarnation = l.incarnation AND f.seq = $3::bigint - 1)
                            = $5::bytea
                     FOR SHARE OF l",
                    s = self.schema
                ),
                &[
                    &i64::from(key_epoch),
                    &incarnation,
                    &seq,
                    &frame,
                    &expected.check().as_slice(),
                ],
            );
            match r {
                Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(0),
                r => r,
            }
        })?;
        if inserted == 1 {
            return Ok(Appended::Done(Cursor::after(
                incarnation as u64,
                seq as u64,
                frame,
            )));
        }
        // Nothing appended: another epoch (the key was rotated), or a stale cursor.
        let mut guard = lock(&self.client);
        let Some(c) = guard.as_mut() else {
            return Err(Error::invalid("session", "used after it ended"));
        };
        self.current(c, key_epoch)?;
        Ok(Appended::Stale)
    }

    fn discard_tail(&mut self, key_epoch: u32, at: &Cursor) -> Result<()> {
        self.in_transaction("cutting", |t| {
            let (incarnation, _) = self.current(t, key_epoch)?;
            if self.holds(t, incarnation, at)? {
                t.execute(
                    &format!(
                        "DELETE FROM {}.frames WHERE incarnation = $1 AND seq > $2",
                        self.schema
                    ),
                    &[&incarnation, &(at.offset() as i64)],
                )
                .map_err(|e| db_error("cutting", self.at(), e))?;
            }
            Ok(())
        })
    }

    fn replace_log(&mut self, key_epoch: u32, frames: &mut Frames<'_>) -> Result<Vec<Cursor>> {
        self.in_transaction("replacing the log of", |t| {
            let (old, _) = self.current(t, key_epoch)?;
            let (new, ends) = self.write_frames(frames, t)?;
            switch_log(t, &self.schema, None, old, new)
                .map_err(|e| db_error("replacing the log of", self.at(), e))?;
            Ok(ends)
        })
    }

    fn rekey(
        &mut self,
        new_epoch: u32,
        frames: &mut Frames<'_>,
        header: &[u8],
    ) -> Result<Vec<Cursor>> {
        self.in_transaction("rotating the key of", |t| {
            let end = log_end(t, &self.schema)
                .map_err(|e| db_error("rotating the key of", self.at(), e))?;
            let Some((_, old, _)) = end else {
                return Err(Error::NoVault(self.at().shown.clone()));
            };
            let (new, ends) = self.write_frames(frames, t)?;
            switch_log(t, &self.schema, Some(new_epoch), old, new)
                .map_err(|e| db_error("rotating the key of", self.at(), e))?;
            t.execute(
                &format!("UPDATE {}.header SET bytes = $1 WHERE id = 1", self.schema),
                &[&header],
            )
            .map_err(|e| db_error("rotating the key of", self.at(), e))?;
            Ok(ends)
        })
    }

    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        self.in_transaction("writing the header of", |t| {
            t.execute(
                &format!("UPDATE {}.header SET bytes = $1 WHERE id = 1", self.schema),
                &[&header],
            )
            .map_err(|e| db_error("writing the header of", self.at(), e))?;
            Ok(())
        })
    }

    fn write_index(&mut self, key_epoch: u32, write: &mut IndexWriter<'_>) -> Result<()> {
        self.in_transaction("writing the index of", |t| {
            let s = &self.schema;
            let err = |e| db_error("writing the index of", self.at(), e);
            let id = next_incarnation(t, s).map_err(err)?;
            let insert = format!("INSERT INTO {s}.index_blocks (id, n, bytes) VALUES ($1, $2, $3)");
            let mut block: Vec<u8> = Vec::with_capacity(INDEX_BLOCK);
            let mut n: i32 = 0;
            let mut len: i64 = 0;
            let t = std::cell::RefCell::new(t);
            let flush = |block: &mut Vec<u8>, n: &mut i32| -> Result<()> {
                t.borrow_mut()
                    .execute(&insert, &[&id, &*n, &*block])
                    .map_err(err)?;
                *n += 1;
                block.clear();
                Ok(())
            };
            write(&mut |mut bytes: &[u8]| {
                len += bytes.len() as i64;
                while !bytes.is_empty() {
                    let take = (INDEX_BLOCK - block.len()).min(bytes.len());
                    let (now, rest) = bytes.split_at(take);
                    block.extend_from_slice(now);
                    bytes = rest;
                    if block.len() == INDEX_BLOCK {
                        flush(&mut block, &mut n)?;
                    }
                }
                Ok(())
            })?;
            if !block.is_empty() {
                flush(&mut block, &mut n)?;
            }
            let t = t.into_inner();
            t.execute(
                &format!("INSERT INTO {s}.indexes (id, epoch, len) VALUES ($1, $2, $3)"),
                &[&id, &i64::from(key_epoch), &len],
            )
            .map_err(err)?;
            t.execute(
                &format!(
                    "INSERT INTO {s}.index_of (epoch, id) VALUES ($1, $2)
                     ON CONFLICT (epoch) DO UPDATE SET id = EXCLUDED.id"
                ),
                &[&i64::from(key_epoch), &id],
            )
            .map_err(err)?;
            // The two newest index files of the epoch stay (a reader may still hold the one
            // before); older ones, and those of other epochs, go.
            t.execute(
                &format!(
                    "WITH gone AS (
                       DELETE FROM {s}.indexes WHERE epoch <> $1 OR id NOT IN
                         (SELECT id FROM {s}.indexes WHERE epoch = $1 ORDER BY id DESC LIMIT 2)
                       RETURNING id)
                     DELETE FROM {s}.index_blocks WHERE id IN (SELECT id FROM gone)"
                ),
                &[&i64::from(key_epoch)],
            )
            .map_err(err)?;
            Ok(())
        })
    }
}

/// Makes `new` the current log (of `epoch`, when it changes) and deletes `old`'s frames.
fn switch_log(
    t: &mut Transaction<'_>,
    schema: &str,
    epoch: Option<u32>,
    old: i64,
    new: i64,
) -> std::result::Result<(), postgres::Error> {
    match epoch {
        Some(e) => t.execute(
            &format!("UPDATE {schema}.log SET incarnation = $1, epoch = $2 WHERE id = 1"),
            &[&new, &i64::from(e)],
        )?,
        None => t.execute(
            &format!("UPDATE {schema}.log SET incarnation = $1 WHERE id = 1"),
            &[&new],
        )?,
    };
    t.execute(
        &format!("DELETE FROM {schema}.frames WHERE incarnation = $1"),
        &[&old],
    )?;
    Ok(())
}

/// An index file in the database: read by block, each read on a pooled connection.
pub struct PgIndex {
    pool: Arc<Pool>,
    schema: String,
    id: i64,
    len: u64,
}

impl IndexFile for PgIndex {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset
            .checked_add(len as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| {
                Error::integrity(
                    self.location(),
                    format!("no {len} bytes at offset {offset}"),
                )
            })?;
        let block = INDEX_BLOCK as u64;
        let (first, last) = (offset / block, end.saturating_sub(1) / block);
        let mut c = self.pool.take()?;
        let rows = c.query(
            &format!(
                "SELECT n, bytes FROM {}.index_blocks WHERE id = $1 AND n BETWEEN $2 AND $3
                  ORDER BY n",
                self.schema
            ),
            &[&self.id, &(first as i32), &(last as i32)],
        );
        self.pool.give(c);
        let rows = rows.map_err(|e| db_error("reading the index of", &self.pool.location, e))?;
        let mut out = Vec::with_capacity(len);
        for (expect, r) in (first as i32..).zip(rows) {
            let n: i32 = r.get(0);
            let bytes: Vec<u8> = r.get(1);
            if n != expect {
                break;
            }
            let base = u64::from(n as u32) * block;
            let from = offset.saturating_sub(base) as usize;
            let to = ((end - base) as usize).min(bytes.len());
            out.extend_from_slice(bytes.get(from..to).unwrap_or_default());
        }
        if out.len() == len {
            Ok(out)
        } else {
            Err(Error::integrity(
                self.location(),
                format!("no {len} bytes at offset {offset} (the index was replaced meanwhile?)"),
            ))
        }
    }

    fn location(&self) -> String {
        format!("{} index {}", self.pool.location.shown, self.id)
    }
}

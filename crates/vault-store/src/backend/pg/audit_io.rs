//! The audit trail of a vault in PostgreSQL, kept as the file backend keeps it, through the
//! same [`Io`] seam: the trail's "files" are rows of `audit_files` (a name, an identity that a
//! rename keeps and a re-creation changes, and a length), their bytes pieces of `audit_pieces`
//! keyed by offset (an append inserts one piece and moves the length on in one statement;
//! nothing is rewritten, and nothing an append does reads more than a piece or two). Every client appends to the one chain,
//! under an advisory lock per lock "file" held on a connection of its own (the server releases
//! it if the client dies). Each statement commits before it returns, so `sync_*` has nothing
//! left to do. Paths outside the trail's root (the anchor, in the client's state directory) go
//! to the local file system, as they would for a directory vault.

use std::io;
use std::path::{Path, PathBuf};

use postgres::Client;

use super::Pool;
use crate::io::{FileStamp, Io, IoFile, IoLock, RealIo};
use crate::sync::{Arc, Mutex, lock};

/// The trail's file system in the vault's schema, and the local one for everything else.
pub(crate) struct PgAuditIo {
    pool: Arc<Pool>,
    schema: String,
    root: PathBuf,
    local: RealIo,
}

impl PgAuditIo {
    /// The trail of the vault whose connections `pool` makes; its files appear under `root`.
    pub(crate) fn new(pool: Arc<Pool>, schema: String, root: PathBuf) -> Self {
        Self {
            pool,
            schema,
            root,
            local: RealIo,
        }
    }

    /// The file's name in the table, if `path` is in the trail.
    fn name(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.root).ok()?;
        Some(rest.to_string_lossy().into_owned())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client, &str) -> Result<T, postgres::Error>,
    ) -> io::Result<T> {
        let mut c = self.pool.take().map_err(io::Error::other)?;
        let r = f(&mut c, &self.schema);
        self.pool.give(c);
        r.map_err(|e| sql_error(&e))
    }

    /// A handle on the file of identity `ino`: it follows the file across renames, as an open
    /// file does (a sealed file's successor is written under a temporary name, then renamed).
    fn file(&self, ino: i64) -> Box<dyn IoFile> {
        Box::new(PgFile {
            io: PgAuditIo {
                pool: self.pool.clone(),
                schema: self.schema.clone(),
                root: self.root.clone(),
                local: RealIo,
            },
            ino,
        })
    }

    /// The identity of the file `name`.
    fn ino_of(&self, name: &str) -> io::Result<i64> {
        self.with(|c, s| {
            c.query_opt(
                &format!("SELECT ino FROM {s}.audit_files WHERE name = $1"),
                &[&name],
            )
        })?
        .map(|r| r.get(0))
        .ok_or_else(|| not_found(name))
    }

    fn stamp_of(&self, name: &str) -> io::Result<FileStamp> {
        let row = self.with(|c, s| {
            c.query_opt(
                &format!("SELECT ino, len FROM {s}.audit_files WHERE name = $1"),
                &[&name],
            )
        })?;
        let row = row.ok_or_else(|| not_found(name))?;
        let (ino, len): (i64, i64) = (row.get(0), row.get(1));
        Ok(FileStamp {
            dev: 0,
            ino: ino.unsigned_abs(),
            len: len.unsigned_abs(),
        })
    }

    /// The bytes of `name` from `from` (to `to`, if given): the piece holding `from`, found
    /// through the key, and those after it.
    fn read_range(&self, name: &str, from: u64, to: Option<u64>) -> io::Result<Vec<u8>> {
        let (from_i, to_i) = (
            offset(from)?,
            to.map(offset).transpose()?.unwrap_or(i64::MAX),
        );
        let rows = self.with(|c, s| {
            c.query(
                &format!(
                    "SELECT off, bytes FROM {s}.audit_pieces
                     WHERE name = $1 AND off < $3 AND off >= coalesce(
                         (SELECT max(off) FROM {s}.audit_pieces WHERE name = $1 AND off <= $2), 0)
                     ORDER BY off"
                ),
                &[&name, &from_i, &to_i],
            )
        })?;
        let mut out = Vec::new();
        let mut at = from;
        for row in rows {
            let (off, bytes): (i64, Vec<u8>) = (row.get(0), row.get(1));
            let off = off.unsigned_abs();
            if off + bytes.len() as u64 <= at {
                continue;
            }
            if off > at {
                return Err(io::Error::other(format!(
                    "audit file {name}: bytes {at}..{off} are missing in the database"
                )));
            }
            let skip = usize::try_from(at - off).unwrap_or(usize::MAX);
            let end = to.map_or(bytes.len(), |t| {
                usize::try_from(t.saturating_sub(off))
                    .unwrap_or(usize::MAX)
                    .min(bytes.len())
            });
            if let Some(part) = bytes.get(skip..end) {
                out.extend_from_slice(part);
                at += part.len() as u64;
            }
        }
        Ok(out)
    }
}

fn offset(n: u64) -> io::Result<i64> {
    i64::try_from(n).map_err(|_| io::Error::other("offset out of range"))
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("audit file {name} is not in the database"),
    )
}

fn sql_error(e: &postgres::Error) -> io::Error {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    };
    match e.code() {
        Some(c) if *c == postgres::error::SqlState::UNIQUE_VIOLATION => {
            io::Error::new(io::ErrorKind::AlreadyExists, text)
        }
        _ => io::Error::other(text),
    }
}

struct PgFile {
    io: PgAuditIo,
    /// The file's identity: its name is looked up by it each time.
    ino: i64,
}

impl IoFile for PgFile {
    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        // The trail only ever appends: one new piece, and the length moved on, in one
        // statement that does nothing unless the file still ends at `at`.
        let (at_i, n) = (offset(at)?, offset(buf.len() as u64)?);
        let appended = self.io.with(|c, s| {
            c.execute(
                &format!(
                    "WITH f AS (UPDATE {s}.audit_files SET len = len + $3
                                WHERE ino = $1 AND len = $2 RETURNING name)
                     INSERT INTO {s}.audit_pieces (name, off, bytes) SELECT name, $2, $4 FROM f"
                ),
                &[&self.ino, &at_i, &n, &buf],
            )
        })?;
        if appended == 1 {
            return Ok(());
        }
        // Anything else: the file rewritten as one piece, in one transaction.
        let mut whole = self.io.read_range(&self.name()?, 0, None)?;
        let end = usize::try_from(at)
            .ok()
            .and_then(|a| a.checked_add(buf.len()))
            .ok_or_else(|| io::Error::other("offset out of range"))?;
        if whole.len() < end {
            whole.resize(end, 0);
        }
        if let Some(dst) = whole.get_mut(end - buf.len()..end) {
            dst.copy_from_slice(buf);
        }
        self.replace(&whole)
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut whole = self.io.read_range(&self.name()?, 0, None)?;
        let n = usize::try_from(len).map_err(|_| io::Error::other("length out of range"))?;
        whole.resize(n, 0);
        self.replace(&whole)
    }

    fn read_from(&self, from: u64) -> io::Result<Vec<u8>> {
        self.io.read_range(&self.name()?, from, None)
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let name = self.name()?;
        let bytes = self.io.read_range(&name, at, Some(at + buf.len() as u64))?;
        if bytes.len() != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "audit file {name} ends before byte {}",
                    at + buf.len() as u64
                ),
            ));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn stamp(&self) -> io::Result<FileStamp> {
        self.io.stamp_of(&self.name()?)
    }
}

impl PgFile {
    /// The file's name now (gone: not found).
    fn name(&self) -> io::Result<String> {
        self.io
            .with(|c, s| {
                c.query_opt(
                    &format!("SELECT name FROM {s}.audit_files WHERE ino = $1"),
                    &[&self.ino],
                )
            })?
            .map(|r| r.get(0))
            .ok_or_else(|| not_found(&format!("(identity {})", self.ino)))
    }

    fn replace(&self, whole: &[u8]) -> io::Result<()> {
        let len = offset(whole.len() as u64)?;
        self.io
            .with(|c, s| {
                let mut t = c.transaction()?;
                let name: Option<String> = t
                    .query_opt(
                        &format!(
                            "UPDATE {s}.audit_files SET len = $2 WHERE ino = $1 RETURNING name"
                        ),
                        &[&self.ino, &len],
                    )?
                    .map(|r| r.get(0));
                if let Some(name) = &name {
                    t.execute(
                        &format!("DELETE FROM {s}.audit_pieces WHERE name = $1"),
                        &[name],
                    )?;
                    if !whole.is_empty() {
                        t.execute(
                            &format!(
                                "INSERT INTO {s}.audit_pieces (name, off, bytes) VALUES ($1, 0, $2)"
                            ),
                            &[name, &whole],
                        )?;
                    }
                }
                t.commit()?;
                Ok(name)
            })?
            .map(drop)
            .ok_or_else(|| not_found(&format!("(identity {})", self.ino)))
    }
}

impl Io for PgAuditIo {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let Some(name) = self.name(path) else {
            return self.local.create_new(path);
        };
        let ino: i64 = self
            .with(|c, s| {
                c.query_one(
                    &format!(
                        "INSERT INTO {s}.audit_files (name, ino) VALUES ($1, nextval('{s}.audit_inodes'))
                         RETURNING ino"
                    ),
                    &[&name],
                )
            })?
            .get(0);
        Ok(self.file(ino))
    }

    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let Some(name) = self.name(path) else {
            return self.local.open_rw(path);
        };
        Ok(self.file(self.ino_of(&name)?))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        match self.name(path) {
            None => self.local.open_read(path),
            Some(_) => self.open_rw(path),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (Some(a), Some(b)) = (self.name(from), self.name(to)) else {
            return self.local.rename(from, to);
        };
        self.with(|c, s| {
            let mut t = c.transaction()?;
            t.execute(
                &format!("DELETE FROM {s}.audit_files WHERE name = $1"),
                &[&b],
            )?;
            let moved = t.execute(
                &format!("UPDATE {s}.audit_files SET name = $2 WHERE name = $1"),
                &[&a, &b],
            )?;
            if moved == 1 {
                t.commit()?;
            }
            Ok(moved)
        })
        .and_then(|moved| {
            if moved == 1 {
                Ok(())
            } else {
                Err(not_found(&a))
            }
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let Some(name) = self.name(path) else {
            return self.local.remove(path);
        };
        let gone = self.with(|c, s| {
            c.execute(
                &format!("DELETE FROM {s}.audit_files WHERE name = $1"),
                &[&name],
            )
        })?;
        if gone == 1 {
            Ok(())
        } else {
            Err(not_found(&name))
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        match self.name(path) {
            None => self.local.create_dir_all(path),
            Some(_) => Ok(()),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self.name(path) {
            None => self.local.sync_dir(path),
            Some(_) => Ok(()),
        }
    }

    fn stamp(&self, path: &Path) -> io::Result<FileStamp> {
        match self.name(path) {
            None => self.local.stamp(path),
            Some(name) => self.stamp_of(&name),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        if self.name(path).is_none() {
            return self.local.list_dir(path);
        }
        self.with(|c, s| {
            let rows = c.query(
                &format!("SELECT name FROM {s}.audit_files ORDER BY name"),
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn open_lock(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoLock>> {
        let Some(name) = self.name(path) else {
            return self.local.open_lock(path, create);
        };
        Ok(Box::new(PgLock {
            pool: self.pool.clone(),
            key: (self.schema.clone(), name),
            held: Mutex::new(None),
        }))
    }
}

/// A lock "file": a session-level advisory lock in the two-key space (the vault's own lock uses
/// the one-key space), keyed by schema and name, on a pooled connection that holds no other lock;
/// released and handed back when this is dropped (and by the server if the process dies).
struct PgLock {
    pool: Arc<Pool>,
    key: (String, String),
    /// The lock's connection (kept between tries), and the lock held on it, if any (exclusive
    /// or not).
    held: Mutex<Option<(Client, Option<bool>)>>,
}

impl IoLock for PgLock {
    fn try_lock(&self, exclusive: bool) -> io::Result<bool> {
        let mut held = lock(&self.held);
        if let Some((_, Some(_))) = held.as_ref() {
            return Ok(true);
        }
        if held.is_none() {
            *held = Some((self.pool.take().map_err(io::Error::other)?, None));
        }
        let Some((c, got_it)) = held.as_mut() else {
            return Ok(false);
        };
        // Waited for in the server, up to a second a try (the caller tries again until its own
        // timeout): waiters queue there in order, where polling from here would let a lucky
        // one overtake the others again and again.
        let f = if exclusive {
            "pg_advisory_lock"
        } else {
            "pg_advisory_lock_shared"
        };
        let got = c.query_one(
            &format!(
                "WITH t AS (SELECT set_config('lock_timeout', '1s', true))
                 SELECT {f}(hashtext($1), hashtext($2)) FROM t"
            ),
            &[&self.key.0, &self.key.1],
        );
        match got {
            Ok(_) => {
                *got_it = Some(exclusive);
                Ok(true)
            }
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(sql_error(&e)),
        }
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        let Some((mut c, got)) = lock(&self.held).take() else {
            return;
        };
        let Some(exclusive) = got else {
            self.pool.give(c);
            return;
        };
        let f = if exclusive {
            "pg_advisory_unlock"
        } else {
            "pg_advisory_unlock_shared"
        };
        // Handed back only once released; a connection that could not release it is closed,
        // which releases it.
        let released = c
            .query_one(
                &format!("SELECT {f}(hashtext($1), hashtext($2))"),
                &[&self.key.0, &self.key.1],
            )
            .is_ok_and(|r| r.get::<_, bool>(0));
        if released {
            self.pool.give(c);
        }
    }
}

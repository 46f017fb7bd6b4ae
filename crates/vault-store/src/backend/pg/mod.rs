//! `PostgresBackend`: a vault kept in a PostgreSQL schema, one row per frame (docs/designs/
//! postgres.md). The database sees what the file backend writes to disk and nothing more: the
//! header of sealed key slots, sealed frames, sealed index blocks.
//!
//! Sessions hold the vault's session-level advisory lock (shared for readers, who also read one
//! `REPEATABLE READ` snapshot; exclusive for the writer), released by the server if the client
//! dies; the writer commits each write in its own transaction before returning. Appends are also conditional on the log
//! still ending where the writer read it, so no client can append after a frame it did not see.

mod audit_io;
mod schema;
mod session;

use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use super::{Backend, Cursor, ReadSession, WriteSession};
use crate::sync::{Arc, Mutex, lock};
use crate::{Error, Result};

pub use session::PgIndex;

/// Where a vault lives in a database: the connection and the vault's name there.
#[derive(Clone)]
pub struct PostgresLocation {
    config: postgres::Config,
    /// The vault's name in the database (its schema is `vault_<name>`).
    name: String,
    /// The location as shown in messages: the URL with any password taken out.
    shown: String,
}

impl std::fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PostgresLocation {
    /// Parses `postgres://user@host:port/db?vault=NAME&…` (or `postgresql://`): libpq's URL
    /// and options, and `vault=NAME` choosing a vault in the database (`default` without it).
    /// A Unix socket directory is given as `host=/path` among the options.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a URL the client does not take or a vault name that is not
    /// 1–48 ASCII lowercase letters, digits and `_`.
    pub fn parse(url: &str) -> Result<Self> {
        let (base, name) = split_vault_name(url);
        let name = checked_name(name.as_deref().unwrap_or("default"))?;
        let config: postgres::Config = base.parse().map_err(|e: postgres::Error| {
            Error::invalid("PostgreSQL location", redact(&e.to_string()))
        })?;
        Ok(Self {
            shown: format!("{}#vault={name}", redact(&base)),
            config,
            name,
        })
    }

    /// The vault `name` in the database `config` connects to (tests and embedding).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a name outside the rule of [`PostgresLocation::parse`].
    pub fn from_config(config: postgres::Config, name: &str) -> Result<Self> {
        let name = checked_name(name)?;
        Ok(Self {
            shown: format!(
                "postgres database {:?}#vault={name}",
                config.get_dbname().unwrap_or_default()
            ),
            config,
            name,
        })
    }

    fn schema(&self) -> String {
        format!("vault_{}", self.name)
    }
}

/// A vault's name in a database: it becomes part of a schema name.
fn checked_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::invalid(
            "vault name",
            format!("{name:?}: 1 to 48 of a-z, 0-9 and _"),
        ))
    }
}

/// Splits a `vault=NAME` option off a URL's query (or a key=value string).
fn split_vault_name(url: &str) -> (String, Option<String>) {
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None);
        };
        let mut name = None;
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("vault=") {
                Some(v) => {
                    name = Some(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let base = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        (base, name)
    } else {
        let mut name = None;
        let rest: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| match kv.strip_prefix("vault=") {
                Some(v) => {
                    name = Some(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        (rest.join(" "), name)
    }
}

/// `text` with any password taken out: `user:secret@` and `password=secret`.
fn redact(text: &str) -> String {
    let mut out = text.to_string();
    if let Some(scheme) = out.find("://") {
        let after = scheme + 3;
        if let Some(at) = out[after..].find('@').map(|i| after + i)
            && let Some(colon) = out[after..at].find(':').map(|i| after + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    let mut words: Vec<String> = Vec::new();
    for part in out.split(['&', ' ', '?']) {
        if let Some(v) = part.strip_prefix("password=")
            && !v.is_empty()
        {
            words.push(part.to_string());
        }
    }
    for w in words {
        out = out.replace(&w, "password=***");
    }
    out
}

/// Connections kept for reuse, and how to make more.
pub(crate) struct Pool {
    location: PostgresLocation,
    idle: Mutex<Vec<Client>>,
    /// The advisory lock's key: one per vault.
    lock_key: i64,
}

/// Most idle connections kept.
const IDLE_CONNECTIONS: usize = 4;

impl Pool {
    fn connect(&self) -> Result<Client> {
        self.location
            .config
            .connect(NoTls)
            .map_err(|e| db_error("connecting to", &self.location, e))
    }

    /// A connection: an idle one, or a new one.
    pub(crate) fn take(&self) -> Result<Client> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    /// Gives a connection back for reuse (dropped if it broke or enough are kept).
    pub(crate) fn give(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(client);
        }
    }
}

/// A database error as the store's: where and what, never the password.
pub(crate) fn db_error(op: &'static str, at: &PostgresLocation, e: postgres::Error) -> Error {
    // The server's own words where it gave some ("db error" alone says nothing).
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    };
    Error::Io {
        op,
        location: at.shown.clone(),
        source: redact(&text).into(),
    }
}

/// A vault in a PostgreSQL database. Cloning gives another handle on the same vault.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresBackend({})", self.pool.location.shown)
    }
}

impl PostgresBackend {
    /// A backend for the vault at `location`. Nothing is contacted until it is used.
    pub fn new(location: PostgresLocation) -> Self {
        let digest =
            vault_crypto::hash::sha256(&[format!("vault {}", location.schema()).as_bytes()]);
        let mut key = [0u8; 8];
        key.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        Self {
            pool: Arc::new(Pool {
                location,
                idle: Mutex::new(Vec::new()),
                lock_key: i64::from_le_bytes(key),
            }),
        }
    }

    fn schema(&self) -> String {
        self.pool.location.schema()
    }

    fn err(&self, op: &'static str) -> impl Fn(postgres::Error) -> Error + '_ {
        move |e| db_error(op, &self.pool.location, e)
    }
}

impl Backend for PostgresBackend {
    fn location(&self) -> String {
        self.pool.location.shown.clone()
    }

    fn audit_place(&self) -> Option<(std::path::PathBuf, Arc<dyn crate::io::Io>)> {
        // A relative root no local path the store uses (the anchor's is absolute) begins with.
        let root = std::path::PathBuf::from(format!("postgres:{}", self.schema()));
        let io = audit_io::PgAuditIo::new(self.pool.clone(), self.schema(), root.clone());
        Some((root, Arc::new(io)))
    }

    fn exists(&self) -> Result<bool> {
        let mut c = self.pool.take()?;
        let there = schema::exists(&mut c, &self.schema()).map_err(self.err("reading"));
        self.pool.give(c);
        there
    }

    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()> {
        let mut c = self.pool.take()?;
        let schema = self.schema();
        let made = (|| -> Result<()> {
            schema::migrate(&mut c, &schema).map_err(self.err("creating the tables of"))?;
            let mut t = c.transaction().map_err(self.err("creating"))?;
            let taken: i64 = t
                .query_one(&format!("SELECT count(*) FROM {schema}.header"), &[])
                .map_err(self.err("creating"))?
                .get(0);
            if taken > 0 {
                return Err(Error::AlreadyExists(self.location()));
            }
            let incarnation =
                session::next_incarnation(&mut t, &schema).map_err(self.err("creating"))?;
            t.execute(
                &format!("INSERT INTO {schema}.frames (incarnation, seq, body) VALUES ($1, 1, $2)"),
                &[&incarnation, &snapshot],
            )
            .map_err(self.err("creating"))?;
            t.execute(
                &format!("INSERT INTO {schema}.log (id, epoch, incarnation) VALUES (1, $1, $2)"),
                &[&i64::from(key_epoch), &incarnation],
            )
            .map_err(self.err("creating"))?;
            t.execute(
                &format!("INSERT INTO {schema}.header (id, bytes) VALUES (1, $1)"),
                &[&header],
            )
            .map_err(self.err("creating"))?;
            t.commit().map_err(self.err("creating"))
        })();
        self.pool.give(c);
        made
    }

    fn read_header(&self) -> Result<Vec<u8>> {
        let mut c = self.pool.take()?;
        let header = session::header(&mut c, &self.schema(), &self.pool.location);
        self.pool.give(c);
        header
    }

    fn changed(&self, key_epoch: u32, since: &Cursor) -> Result<bool> {
        let mut c = self.pool.take()?;
        let end = session::log_end(&mut c, &self.schema()).map_err(self.err("reading"));
        self.pool.give(c);
        let Some((epoch, incarnation, last)) = end? else {
            return Err(Error::NoVault(self.location()));
        };
        session::check_epoch(epoch, key_epoch, &self.pool.location)?;
        Ok(since.hint() != incarnation as u64 || since.offset() != last as u64)
    }

    fn begin_read(&self, timeout: Duration) -> Result<Box<dyn ReadSession + '_>> {
        Ok(Box::new(session::PgSession::begin(
            self.pool.clone(),
            self.schema(),
            false,
            Instant::now() + timeout,
        )?))
    }

    fn begin_write(&self, timeout: Duration) -> Result<Box<dyn WriteSession + '_>> {
        Ok(Box::new(session::PgSession::begin(
            self.pool.clone(),
            self.schema(),
            true,
            Instant::now() + timeout,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_never_show_a_password() {
        let l = PostgresLocation::parse("postgres://alice:s3cret@db.example:5433/team?vault=ops")
            .unwrap();
        assert_eq!(l.name, "ops");
        assert!(!l.shown.contains("s3cret"), "{}", l.shown);
        assert!(l.shown.contains("alice:***@db.example"), "{}", l.shown);
        let l = PostgresLocation::parse("host=/tmp/pg port=5432 user=v password=hunter2").unwrap();
        assert_eq!(l.name, "default");
        assert!(!l.shown.contains("hunter2"), "{}", l.shown);
        for bad in [
            "postgres://h/db?vault=Bad",
            "postgres://h/db?vault=",
            "postgres://h/db?vault=a-b",
        ] {
            assert!(PostgresLocation::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            split_vault_name("postgres://h/db?sslmode=require&vault=x").0,
            "postgres://h/db?sslmode=require"
        );
    }
}

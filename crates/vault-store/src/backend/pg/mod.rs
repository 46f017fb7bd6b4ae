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

use postgres::Client;

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
    /// The CA certificate(s) the server's must chain to (`sslrootcert=`, or PGSSLROOTCERT):
    /// with it the server is verified, name included; without it TLS encrypts but, as libpq's
    /// `sslmode=prefer` and `require` do, does not check whom it talks to.
    root_cert: Option<std::path::PathBuf>,
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
        let (base, own) = split_own_options(url);
        if let Some(key) = own.repeated {
            return Err(Error::invalid(
                "PostgreSQL location",
                format!("{key}= is given twice"),
            ));
        }
        let name = checked_name(own.vault.as_deref().unwrap_or("default"))?;
        let mut config: postgres::Config = base.parse().map_err(|e: postgres::Error| {
            Error::invalid(
                "PostgreSQL location",
                format!(
                    "{} (libpq options this client does not take include sslcert, sslkey and service)",
                    redact(&e.to_string())
                ),
            )
        })?;
        // As libpq: the password from PGPASSWORD when the location has none.
        if config.get_password().is_none()
            && let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty())
        {
            config.password(p.as_encoded_bytes());
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mode = own.ssl_mode.clone().or_else(|| env("PGSSLMODE"));
        let root_cert = tls_policy(
            &mut config,
            mode.as_deref(),
            own.root_cert,
            env("PGSSLROOTCERT"),
        )?;
        // Shown as it can be given back (the password taken out).
        let sep = if !base.contains("://") {
            " "
        } else if base.contains('?') {
            "&"
        } else {
            "?"
        };
        Ok(Self {
            shown: format!("{}{sep}vault={name}", redact(&base)),
            config,
            name,
            root_cert,
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
            root_cert: None,
        })
    }

    fn schema(&self) -> String {
        format!("vault_{}", self.name)
    }
}

/// Sets the connection's TLS mode from libpq's `sslmode` and returns the CA to verify the server
/// with. A CA given (or a `verify-*` mode) means the server must be verified, so TLS is then
/// required: a server that does not offer it is refused rather than talked to in the clear.
fn tls_policy(
    config: &mut postgres::Config,
    mode: Option<&str>,
    root_cert: Option<String>,
    env_root_cert: Option<String>,
) -> Result<Option<std::path::PathBuf>> {
    use postgres::config::SslMode;
    let invalid = |why: String| Error::invalid("PostgreSQL location", why);
    let default_root = || {
        std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".postgresql/root.crt"))
            .filter(|p| p.is_file())
    };
    let (ssl, root) = match mode.unwrap_or("prefer") {
        "disable" if root_cert.is_some() || env_root_cert.is_some() => {
            return Err(invalid(
                "a CA (sslrootcert= or PGSSLROOTCERT) asks for the server to be verified, and sslmode=disable for no TLS"
                    .into(),
            ));
        }
        "disable" => (SslMode::Disable, None),
        // `allow` (plain first) is not offered by this client: TLS when the server offers it.
        "allow" | "prefer" | "require" => {
            let root = root_cert.or(env_root_cert).map(std::path::PathBuf::from);
            let required = mode == Some("require") || root.is_some();
            (
                if required {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                },
                root,
            )
        }
        "verify-ca" | "verify-full" => {
            let root = root_cert
                .or(env_root_cert)
                .map(std::path::PathBuf::from)
                .or_else(default_root)
                .ok_or_else(|| {
                    invalid(format!(
                        "sslmode={} needs the CA to verify the server with: sslrootcert=/path/to/ca.pem (or PGSSLROOTCERT, or ~/.postgresql/root.crt; sslrootcert=system for the system's CAs)",
                        mode.unwrap_or_default()
                    ))
                })?;
            (SslMode::Require, Some(root))
        }
        other => {
            return Err(invalid(format!(
                "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    config.ssl_mode(ssl);
    Ok(root)
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

/// Options this crate reads itself, taken off a URL's query (or a key=value string): `vault`,
/// and `sslmode` and `sslrootcert` (the client library takes only some of libpq's modes, and no
/// CA file).
#[derive(Default)]
struct OwnOptions {
    vault: Option<String>,
    root_cert: Option<String>,
    ssl_mode: Option<String>,
    /// An option given twice (which one was meant cannot be told).
    repeated: Option<&'static str>,
}

fn split_own_options(url: &str) -> (String, OwnOptions) {
    let mut own = OwnOptions::default();
    let mut take = |kv: &str| {
        let (slot, key) = if let Some(v) = kv.strip_prefix("vault=") {
            (&mut own.vault, ("vault", v))
        } else if let Some(v) = kv.strip_prefix("sslrootcert=") {
            (&mut own.root_cert, ("sslrootcert", v))
        } else if let Some(v) = kv.strip_prefix("sslmode=") {
            (&mut own.ssl_mode, ("sslmode", v))
        } else {
            return true;
        };
        if slot.replace(key.1.to_string()).is_some() {
            own.repeated = Some(key.0);
        }
        false
    };
    let base = if url.contains("://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let rest: Vec<&str> = query.split('&').filter(|kv| take(kv)).collect();
                if rest.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", rest.join("&"))
                }
            }
        }
    } else {
        let rest: Vec<&str> = url.split_whitespace().filter(|kv| take(kv)).collect();
        rest.join(" ")
    };
    (base, own)
}

/// `s` with `%XX` escapes decoded (bytes that are not UTF-8 are replaced).
fn percent_decoded(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(x)) => {
                out.push(x);
                rest = tail.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(c);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with any password taken out: `user:secret@` and `password=secret`.
fn redact(text: &str) -> String {
    let mut out = text.to_string();
    if let Some(scheme) = out.find("://") {
        let after = scheme + 3;
        // The last '@' ends the user part: a password may hold an unencoded '@' (one in the
        // query after it only hides more than it needs to).
        if let Some(at) = out[after..].rfind('@').map(|i| after + i)
            && let Some(colon) = out[after..at].find(':').map(|i| after + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    let mut words: Vec<(String, String)> = Vec::new();
    for part in out.split(['&', ' ', '?']) {
        // The key as the client reads it: percent-decoded, any case (`%70assword=`).
        if let Some((key, value)) = part.split_once('=')
            && percent_decoded(key).eq_ignore_ascii_case("password")
            && !value.is_empty()
        {
            words.push((part.to_string(), format!("{key}=***")));
        }
    }
    for (w, masked) in words {
        out = out.replace(&w, &masked);
    }
    out
}

/// Connections kept for reuse, and how to make more.
pub(crate) struct Pool {
    location: PostgresLocation,
    idle: Mutex<Vec<Client>>,
    /// The advisory lock's key: one per vault.
    lock_key: i64,
    /// Whether the schema's version was found usable.
    schema_checked: std::sync::atomic::AtomicBool,
}

/// Most idle connections kept.
const IDLE_CONNECTIONS: usize = 4;

impl Pool {
    fn connect(&self) -> Result<Client> {
        let tls = self.tls()?;
        self.location
            .config
            .connect(tls)
            .map_err(|e| db_error("connecting to", &self.location, e))
    }

    /// TLS as the server offers it (libpq's `sslmode`, `prefer` by default): verified against
    /// the location's CA certificate when one is given, else encrypting only.
    fn tls(&self) -> Result<postgres_openssl::MakeTlsConnector> {
        let refused = |e: openssl::error::ErrorStack| Error::Io {
            op: "setting up TLS for",
            location: self.location.shown.clone(),
            source: e.to_string().into(),
        };
        let mut b =
            openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).map_err(refused)?;
        match &self.location.root_cert {
            Some(ca) if ca.as_os_str() == "system" => {
                b.set_default_verify_paths().map_err(refused)?
            }
            Some(ca) => b.set_ca_file(ca).map_err(|e| Error::Io {
                op: "reading the CA certificate (sslrootcert) for",
                location: format!("{} ({})", self.location.shown, ca.display()),
                source: e.to_string().into(),
            })?,
            None => b.set_verify(openssl::ssl::SslVerifyMode::NONE),
        }
        let mut connector = postgres_openssl::MakeTlsConnector::new(b.build());
        if self.location.root_cert.is_none() {
            connector.set_callback(|c, _| {
                c.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
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
        None => {
            // The causes too: "error performing TLS handshake" alone does not say that the
            // certificate did not verify.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
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
                schema_checked: std::sync::atomic::AtomicBool::new(false),
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

/// What `vault doctor` reports of a database vault's connection and schema.
#[derive(Clone, Debug)]
pub struct PgDiagnosis {
    /// The server's version string.
    pub server_version: String,
    /// The role connected as.
    pub role: String,
    /// Over a Unix socket (TLS does not apply), as the server sees it.
    pub socket: bool,
    /// The TLS version and cipher in use, if any.
    pub tls: Option<String>,
    /// Whether the server's certificate is checked (`sslrootcert`).
    pub verified: bool,
    /// The schema's version, if it has one.
    pub schema_version: Option<i64>,
    /// The version this build writes.
    pub build_schema_version: i64,
    /// Whether the role may create objects in the vault's schema (its owner's rights, more
    /// than a member needs).
    pub can_create: bool,
}

impl PostgresBackend {
    /// Refuses a schema this build cannot use: one of a newer build (its tables may hold what
    /// this one would not keep up to date) or with no valid version. Checked once per handle.
    fn check_schema(&self) -> Result<()> {
        if self
            .pool
            .schema_checked
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let mut c = self.pool.take()?;
        let schema = self.schema();
        let read = c.query_opt(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'schema_version'"),
            &[],
        );
        self.pool.give(c);
        let value: Option<String> = match read {
            Ok(row) => row.map(|r| r.get(0)),
            // No schema (no vault here): the caller says so in its own words.
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Ok(());
            }
            Err(e) => return Err(self.err("reading")(e)),
        };
        let build = schema::version();
        match value.as_deref().map(str::parse::<u16>) {
            Some(Ok(v)) if (1..=u16::try_from(build).unwrap_or(u16::MAX)).contains(&v) => {}
            Some(Ok(v)) if usize::from(v) > build => {
                return Err(Error::Format(vault_format::Error::UnsupportedVersion {
                    object: "database schema",
                    found: v,
                    max: u16::try_from(build).unwrap_or(u16::MAX),
                }));
            }
            _ => {
                return Err(Error::integrity(
                    format!("{schema}.meta"),
                    format!(
                        "the schema version is {}, not a version of this vault's tables",
                        value
                            .as_deref()
                            .map_or("missing".to_string(), |v| format!("{v:?}"))
                    ),
                ));
            }
        }
        self.pool
            .schema_checked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Connects and reports on the connection and the schema ([`PgDiagnosis`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the server cannot be reached or a query fails.
    pub fn diagnose(&self) -> Result<PgDiagnosis> {
        let mut c = self.pool.take()?;
        let schema = self.schema();
        let run = |c: &mut Client| -> std::result::Result<PgDiagnosis, postgres::Error> {
            let row = c.query_one(
                "SELECT current_setting('server_version'), current_user::text,
                        (SELECT CASE WHEN ssl THEN version || ' ' || cipher END
                         FROM pg_stat_ssl WHERE pid = pg_backend_pid()),
                        inet_client_addr() IS NULL,
                        has_schema_privilege(current_user, $1, 'CREATE')",
                &[&schema],
            );
            let (server_version, role, tls, socket, can_create) = match row {
                Ok(r) => (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)),
                // No schema (yet): has_schema_privilege refuses an unknown name.
                Err(_) => {
                    let r = c.query_one(
                        "SELECT current_setting('server_version'), current_user::text,
                                (SELECT CASE WHEN ssl THEN version || ' ' || cipher END
                                 FROM pg_stat_ssl WHERE pid = pg_backend_pid()),
                                inet_client_addr() IS NULL",
                        &[],
                    )?;
                    (r.get(0), r.get(1), r.get(2), r.get(3), false)
                }
            };
            let schema_version = c
                .query_opt(
                    &format!(
                        "SELECT value::bigint FROM {schema}.meta WHERE key = 'schema_version'"
                    ),
                    &[],
                )
                .ok()
                .flatten()
                .map(|r| r.get(0));
            Ok(PgDiagnosis {
                server_version,
                role,
                socket,
                tls,
                verified: self.pool.location.root_cert.is_some(),
                schema_version,
                build_schema_version: i64::try_from(schema::version()).unwrap_or(i64::MAX),
                can_create,
            })
        };
        let d = run(&mut c).map_err(self.err("diagnosing"));
        self.pool.give(c);
        d
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
        self.check_schema()?;
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
        self.check_schema()?;
        Ok(Box::new(session::PgSession::begin(
            self.pool.clone(),
            self.schema(),
            false,
            Instant::now() + timeout,
        )?))
    }

    fn begin_write(&self, timeout: Duration) -> Result<Box<dyn WriteSession + '_>> {
        self.check_schema()?;
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
        let shown = redact("postgres://h/db?%70assword=S3cA&PASSWORD=x2 failed");
        assert!(!shown.contains("S3cA") && !shown.contains("x2"), "{shown}");
        let shown = redact("postgres://alice:Hunter@SecretTail@127.0.0.1:1/db: failed");
        assert!(
            !shown.contains("Hunter") && !shown.contains("SecretTail"),
            "{shown}"
        );
        let l = PostgresLocation::parse("host=/tmp/pg port=5432 user=v password=hunter2").unwrap();
        assert_eq!(l.name, "default");
        assert!(!l.shown.contains("hunter2"), "{}", l.shown);
        for bad in [
            "postgres://h/db?vault=a&vault=b",
            "host=h vault=a vault=b",
            "postgres://h/db?vault=Bad",
            "postgres://h/db?vault=",
            "postgres://h/db?vault=a-b",
        ] {
            assert!(PostgresLocation::parse(bad).is_err(), "{bad}");
        }
        let (base, own) =
            split_own_options("postgres://h/db?sslmode=require&vault=x&sslrootcert=/ca.pem");
        assert_eq!(base, "postgres://h/db");
        assert_eq!(own.ssl_mode.as_deref(), Some("require"));
        assert_eq!(own.vault.as_deref(), Some("x"));
        assert_eq!(own.root_cert.as_deref(), Some("/ca.pem"));
        let (base, own) = split_own_options("host=h sslrootcert=/ca.pem vault=y");
        assert_eq!((base.as_str(), own.vault.as_deref()), ("host=h", Some("y")));
        // A CA given means TLS is required: no plain fallback.
        use postgres::config::SslMode;
        let mode = |url: &str| PostgresLocation::parse(url).map(|l| l.config.get_ssl_mode());
        assert_eq!(mode("postgres://h/db").unwrap(), SslMode::Prefer);
        assert_eq!(
            mode("postgres://h/db?sslrootcert=/ca.pem").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert!(mode("postgres://h/db?sslmode=disable&sslrootcert=/ca.pem").is_err());
        assert!(mode("postgres://h/db?sslmode=bogus").is_err());
        // A CA from the environment counts as one given: not with sslmode=disable.
        let mut c: postgres::Config = "host=h".parse().unwrap();
        assert!(tls_policy(&mut c, Some("disable"), None, Some("/ca.pem".into())).is_err());
        assert!(tls_policy(&mut c, None, None, Some("/ca.pem".into())).is_ok());
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
    }
}

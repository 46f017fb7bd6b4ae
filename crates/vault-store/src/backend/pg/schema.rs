//! The tables of a vault's schema, created and migrated by the backend: numbered migrations,
//! each run once, in order, in one transaction under an advisory lock, so two clients creating
//! the same vault at once do not race.

use postgres::Client;

/// The migrations, in order; a database at version N has run the first N.
const MIGRATIONS: &[&str] = &[
    // 1: the header, the current log, its frames, index files in blocks.
    "CREATE TABLE {s}.header (id int PRIMARY KEY CHECK (id = 1), bytes bytea NOT NULL);
     CREATE TABLE {s}.log (id int PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL,
                           incarnation bigint NOT NULL);
     CREATE TABLE {s}.frames (incarnation bigint NOT NULL, seq bigint NOT NULL,
                              body bytea NOT NULL, PRIMARY KEY (incarnation, seq));
     ALTER TABLE {s}.frames ALTER COLUMN body SET STORAGE EXTERNAL;
     CREATE SEQUENCE {s}.incarnations;
     CREATE TABLE {s}.indexes (id bigint PRIMARY KEY, epoch bigint NOT NULL, len bigint NOT NULL);
     CREATE TABLE {s}.index_blocks (id bigint NOT NULL, n int NOT NULL, bytes bytea NOT NULL,
                                    PRIMARY KEY (id, n));
     CREATE TABLE {s}.index_of (epoch bigint PRIMARY KEY, id bigint NOT NULL);",
    // 2: the audit trail's files (backend/pg/audit_io.rs): a name, an identity and a length
    // per file, its bytes in pieces keyed by offset.
    "CREATE SEQUENCE {s}.audit_inodes;
     CREATE TABLE {s}.audit_files (name text PRIMARY KEY, ino bigint NOT NULL,
                                   len bigint NOT NULL DEFAULT 0);
     CREATE TABLE {s}.audit_pieces (name text NOT NULL
                                      REFERENCES {s}.audit_files (name)
                                      ON UPDATE CASCADE ON DELETE CASCADE,
                                    off bigint NOT NULL, bytes bytea NOT NULL,
                                    PRIMARY KEY (name, off));",
];

/// Whether the vault's schema holds a vault (its header row).
pub(super) fn exists(c: &mut Client, schema: &str) -> Result<bool, postgres::Error> {
    let table: Option<String> = c
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{schema}.header")],
        )?
        .get(0);
    if table.is_none() {
        return Ok(false);
    }
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {schema}.header"), &[])?
        .get(0);
    Ok(n > 0)
}

/// Brings the schema up to this build's version (creating it if it is not there).
pub(super) fn migrate(c: &mut Client, schema: &str) -> Result<(), postgres::Error> {
    let mut t = c.transaction()?;
    // One migrator at a time, per schema: the lock ends with the transaction.
    t.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("migrate {schema}")],
    )?;
    t.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.meta (key text PRIMARY KEY, value text NOT NULL);"
    ))?;
    let done: i64 = t
        .query_opt(
            &format!("SELECT value::bigint FROM {schema}.meta WHERE key = 'schema_version'"),
            &[],
        )?
        .map_or(0, |r| r.get(0));
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        t.batch_execute(&m.replace("{s}", schema))?;
        t.execute(
            &format!(
                "INSERT INTO {schema}.meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            &[&(i + 1).to_string()],
        )?;
    }
    t.commit()
}

/// The schema version this build writes.
pub(super) fn version() -> usize {
    MIGRATIONS.len()
}

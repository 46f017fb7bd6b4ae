//! `vault doctor [--json]`: what could be wrong with this vault's setup, each finding with a
//! plain-language fix. Reads files only (no passphrase); the last backup comes from the audit
//! trail when an agent is unlocked.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::cli::Cli;
use crate::location::{state_dir, vault_dir};
use crate::output::Stdout;
use crate::{Failure, fail};

/// How a check came out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
    Info,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
            Level::Info => "info",
        }
    }
}

struct Finding {
    check: &'static str,
    level: Level,
    detail: String,
    fix: Option<String>,
}

fn finding(
    check: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Finding {
    Finding {
        check,
        level,
        detail: detail.into(),
        fix,
    }
}

/// The recommended floor for a passphrase slot's Argon2id (as `vault init` warns).
const FLOOR_KIB: u32 = 64 * 1024;
const FLOOR_PASSES: u32 = 2;

fn private(m: &std::fs::Metadata) -> bool {
    m.uid() == rustix::process::getuid().as_raw() && m.permissions().mode() & 0o077 == 0
}

fn directory(check: &'static str, dir: &Path, out: &mut Vec<Finding>) -> bool {
    match std::fs::symlink_metadata(dir) {
        Err(_) => {
            out.push(finding(
                check,
                Level::Fail,
                format!("{} does not exist", dir.display()),
                None,
            ));
            false
        }
        Ok(m) if !m.is_dir() => {
            out.push(finding(
                check,
                Level::Fail,
                format!("{} is not a directory", dir.display()),
                None,
            ));
            false
        }
        Ok(m) if !private(&m) => {
            out.push(finding(
                check,
                Level::Warn,
                format!(
                    "{} (mode {:o}) can be entered by others, or is not yours",
                    dir.display(),
                    m.permissions().mode() & 0o777
                ),
                Some(format!("chmod 700 {}", dir.display())),
            ));
            true
        }
        Ok(_) => {
            out.push(finding(
                check,
                Level::Ok,
                format!("{} is yours alone (0700)", dir.display()),
                None,
            ));
            true
        }
    }
}

/// What the header says: its format, and each slot's key derivation against the floor.
fn header_findings(
    bytes: Result<Vec<u8>, String>,
    out: &mut Vec<Finding>,
) -> Option<vault_format::VaultId> {
    let mut id = None;
    match bytes {
        Err(e) => out.push(finding(
            "format",
            Level::Fail,
            format!("no vault header ({e})"),
            Some(
                "`vault init` creates a vault; `vault restore` brings one back from a backup"
                    .into(),
            ),
        )),
        Ok(bytes) => match vault_format::VaultHeader::decode(&bytes) {
            Err(e) => out.push(finding(
                "format",
                Level::Fail,
                format!("the header does not read: {e}"),
                Some("a newer vault needs a newer build; otherwise run `vault verify`".into()),
            )),
            Ok(h) => {
                id = Some(h.vault_id);
                out.push(finding(
                    "format",
                    Level::Ok,
                    format!(
                        "format version 1, key epoch {}, {} key slot(s)",
                        h.key_epoch,
                        h.slots.len()
                    ),
                    None,
                ));
                let unfinished = h.removed_members();
                if !unfinished.is_empty() {
                    out.push(finding(
                        "members",
                        Level::Warn,
                        format!(
                            "the removal of {} is not finished: the master key has not been rotated since, so they may still hold it",
                            unfinished.join(", ")
                        ),
                        Some("any command that writes finishes it (`vault compact`, say)".into()),
                    ));
                }
                for s in &h.slots {
                    if let Some(k) = s.kdf() {
                        let weak = k.memory_kib() < FLOOR_KIB || k.iterations() < FLOOR_PASSES;
                        out.push(finding(
                                "key derivation",
                                if weak { Level::Warn } else { Level::Ok },
                                format!(
                                    "slot {}: Argon2id {}, {} pass(es){}",
                                    s.id,
                                    crate::text::kib_text(k.memory_kib()),
                                    k.iterations(),
                                    if weak { ", below the recommended 64 MiB and 2 passes" } else { "" }
                                ),
                                weak.then(|| "`vault change-passphrase` rewrites the slot at the default 256 MiB, 3 passes (or `vault init --kdf-target-ms 1000` for a new vault)".into()),
                            ));
                    }
                }
            }
        },
    }
    id
}

/// Whether this client keeps a rollback record for vault `id` in `state`; `why` says why there
/// may be none, `risk` what goes unnoticed until there is.
fn rollback_finding(state: &Path, id: vault_format::VaultId, why: &str, risk: &str) -> Finding {
    let record = state
        .join("rollback")
        .join(format!("{}.rollback", id.to_hex()));
    if record.exists() {
        finding(
            "rollback record",
            Level::Ok,
            format!("{} is there", record.display()),
            None,
        )
    } else {
        finding(
            "rollback record",
            Level::Warn,
            format!("no rollback record at {} ({why})", record.display()),
            Some(format!(
                "the next command that opens the vault records one; until then {risk}"
            )),
        )
    }
}

/// Whether an agent keeps this vault unlocked.
fn agent_finding(agent: Option<&crate::agent::wire::Reply>) -> Finding {
    match agent {
        Some(r) => finding(
            "agent",
            Level::Ok,
            format!(
                "unlocked: pid {}, locks after {} s without a command",
                r.pid, r.idle_left_s
            ),
            None,
        ),
        None => finding(
            "agent",
            Level::Info,
            "not unlocked (commands ask for the passphrase)",
            Some("`vault unlock` keeps the vault open for the commands that follow".into()),
        ),
    }
}

/// `vault doctor`.
pub(crate) fn doctor(cli: &Cli, json: bool) -> Result<(), Failure> {
    let mut out = Vec::new();
    #[cfg(feature = "postgres")]
    if let crate::location::Place::Db(at) = crate::location::place(cli)? {
        return report(database(cli, &at)?, json);
    }
    let dir = vault_dir(cli)?;
    let exists = directory("vault directory", &dir, &mut out);
    let mut vault_id = None;
    if exists {
        // Every file owner-only.
        let open: Vec<String> = std::fs::read_dir(&dir)
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| e.metadata().is_ok_and(|m| m.is_file() && !private(&m)))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(if open.is_empty() {
            finding("vault files", Level::Ok, "every file is owner-only", None)
        } else {
            finding(
                "vault files",
                Level::Warn,
                format!("readable by others: {}", open.join(", ")),
                Some(format!("chmod 600 {}/*", dir.display())),
            )
        });
        vault_id = header_findings(
            std::fs::read(dir.join("header")).map_err(|e| e.to_string()),
            &mut out,
        );
        // The write lock: held now means a write is under way (or a process is stuck in one).
        if let Ok(f) = std::fs::File::open(dir.join("lock")) {
            let held =
                rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err();
            out.push(finding(
                "write lock",
                Level::Info,
                if held {
                    "a process is writing to the vault now"
                } else {
                    "no process is writing"
                },
                None,
            ));
        }
    }
    let state = state_dir(cli)?;
    if crate::location::state_inside_vault(&state, &dir) {
        out.push(finding(
            "rollback record",
            Level::Fail,
            format!("the state directory {} is inside the vault directory: a copy put back would bring its record with it", state.display()),
            Some("give --state-dir (or VAULT_STATE_DIR) a directory outside the vault's".into()),
        ));
    } else if let Some(id) = vault_id {
        out.push(rollback_finding(
            &state,
            id,
            "another machine, or a lost state directory",
            "an older copy of the vault put back would not be noticed",
        ));
    }
    let memlock = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
    // What the agent's ten keys, each in its own allocation, can take: a page each at most.
    const KEYS_MEMLOCK: u64 = 64 * 1024;
    let agent = crate::agent::client::status(cli);
    out.push(agent_finding(agent.as_ref()));
    out.push(match memlock {
        None => finding("memory locking", Level::Ok, "an agent's memory can all be locked against swapping", None),
        Some(bytes) if bytes < KEYS_MEMLOCK => finding(
            "memory locking",
            Level::Warn,
            format!("RLIMIT_MEMLOCK is {} KiB: an agent may not be able to lock even the vault's keys against swapping (they need a few pages)", bytes / 1024),
            Some("raise it to 64 KiB or more (`ulimit -l`, or memlock in /etc/security/limits.conf), or use encrypted swap".into()),
        ),
        Some(bytes) => finding(
            "memory locking",
            Level::Warn,
            format!("RLIMIT_MEMLOCK is {} KiB: an agent locks the vault's keys against swapping, not the rest of its memory (values while a command runs)", bytes / 1024),
            Some("raise it (`ulimit -l unlimited`, or memlock in /etc/security/limits.conf), or use encrypted swap".into()),
        ),
    });
    // The last backup, from the audit trail: only through an agent (doctor asks for no
    // passphrase).
    if agent.is_some() {
        let argv = [
            "vault",
            "audit",
            "--op",
            "backup",
            "--outcome",
            "ok",
            "--json",
        ]
        .map(String::from)
        .to_vec();
        let last = crate::agent::client::capture(cli, argv)
            .ok()
            .flatten()
            .and_then(|o| {
                let text = String::from_utf8(o).ok()?;
                let line = text.lines().last()?.to_string();
                serde_json::from_str::<serde_json::Value>(&line).ok()
            });
        out.push(match last {
            Some(v) => finding(
                "last backup",
                Level::Ok,
                format!(
                    "{} (whether it was verified is not recorded)",
                    v.get("time").and_then(|t| t.as_str()).unwrap_or("?")
                ),
                Some("`vault backup verify FILE` checks a backup without restoring it".into()),
            ),
            None => finding(
                "last backup",
                Level::Warn,
                "no backup in the audit trail",
                Some("`vault backup FILE`, then `vault backup verify FILE`".into()),
            ),
        });
    } else {
        out.push(finding(
            "last backup",
            Level::Info,
            "unknown without unlocking",
            Some("`vault unlock`, then `vault doctor` again, or `vault audit --op backup`".into()),
        ));
    }
    report(out, json)
}

/// Prints the findings; a failure among them is exit 1.
fn report(out: Vec<Finding>, json: bool) -> Result<(), Failure> {
    let mut o = Stdout::lock();
    for f in &out {
        let line = if json {
            format!(
                "{}\n",
                serde_json::json!({
                    "check": f.check,
                    "status": f.level.name(),
                    "detail": f.detail,
                    "fix": f.fix,
                })
            )
        } else {
            let fix = f
                .fix
                .as_deref()
                .map_or(String::new(), |x| format!("\n        fix: {x}"));
            format!("{:<5} {:<16} {}{fix}\n", f.level.name(), f.check, f.detail)
        };
        o.write(line.as_bytes())?;
    }
    o.finish()?;
    if out.iter().any(|f| f.level == Level::Fail) {
        return Err(fail(crate::exit::Exit::Other, "doctor found a failure"));
    }
    Ok(())
}

/// A database vault's checks: the connection (TLS and whether the server is verified), the
/// schema, the role's rights, the header, and this client's rollback record.
#[cfg(feature = "postgres")]
fn database(cli: &Cli, at: &vault_store::PostgresLocation) -> Result<Vec<Finding>, Failure> {
    use vault_store::Backend;
    let mut out = Vec::new();
    let backend = vault_store::PostgresBackend::new(at.clone());
    let d = match backend.diagnose() {
        Ok(d) => d,
        Err(e) => {
            out.push(finding(
                "database",
                Level::Fail,
                crate::failure::Failure::from(e).message.unwrap_or_default(),
                Some("check the location, that the server is up, and the role's password (in the URL or PGPASSWORD; ~/.pgpass is not read)".into()),
            ));
            return Ok(out);
        }
    };
    out.push(finding(
        "database",
        Level::Ok,
        format!("PostgreSQL {} as role {}", d.server_version, d.role),
        None,
    ));
    out.push(match (&d.tls, d.socket, d.verified) {
        (_, true, _) => finding("tls", Level::Ok, "a local socket: nothing crosses a network", None),
        (Some(t), false, true) => finding("tls", Level::Ok, format!("{t}, the server's certificate verified"), None),
        (Some(t), false, false) => finding(
            "tls",
            Level::Warn,
            format!("{t}, but the server is not verified: anyone in the path could pose as it"),
            Some("add sslrootcert=/path/to/ca.pem to the location (or set PGSSLROOTCERT)".into()),
        ),
        (None, false, _) => finding(
            "tls",
            Level::Warn,
            "a plain connection over the network: the database password and the (sealed) rows cross it in the clear",
            Some("enable ssl on the server, and add sslmode=require&sslrootcert=/path/to/ca.pem to the location".into()),
        ),
    });
    out.push(match d.schema_version {
        None => finding(
            "schema",
            Level::Fail,
            "no vault in this database under that name",
            Some("`vault init` creates one".into()),
        ),
        Some(v) if v > d.build_schema_version => finding(
            "schema",
            Level::Fail,
            format!("schema version {v}, newer than this build's {}", d.build_schema_version),
            Some("use a newer build of vault".into()),
        ),
        Some(v) if v < d.build_schema_version => finding(
            "schema",
            Level::Warn,
            format!("schema version {v}, older than this build's {}: tables added since (the audit trail's) are missing", d.build_schema_version),
            Some("create the vault anew and move the secrets over (`vault export`, `vault import`)".into()),
        ),
        Some(v) => finding("schema", Level::Ok, format!("schema version {v}"), None),
    });
    out.push(finding(
        "role rights",
        Level::Info,
        if d.can_create {
            format!(
                "{} may create objects in the vault's schema (the owner's rights)",
                d.role
            )
        } else {
            format!(
                "{} may not create objects in the vault's schema (a member's rights)",
                d.role
            )
        },
        None,
    ));
    let mut vault_id = None;
    if d.schema_version.is_some() {
        vault_id = header_findings(
            backend
                .read_header()
                .map_err(|e| crate::failure::Failure::from(e).message.unwrap_or_default()),
            &mut out,
        );
    }
    let state = state_dir(cli)?;
    if let Some(id) = vault_id {
        out.push(rollback_finding(
            &state,
            id,
            "this client has not opened the vault yet",
            "a database put back to an older state would not be noticed by this client",
        ));
    }
    out.push(agent_finding(crate::agent::client::status(cli).as_ref()));
    Ok(out)
}

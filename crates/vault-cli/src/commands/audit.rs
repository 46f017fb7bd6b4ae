//! `vault audit [filters] [--json]` and `vault audit verify`: reading and checking the vault's
//! audit trail (docs/designs/audit.md).

use std::cell::RefCell;

use vault_store::{AuditEntry, AuditNames, AuditOp, AuditPolicy, AuditTarget};

use crate::cli::{AuditPolicyArgs, AuditQuery, Cli};
use crate::exit::Exit;
use crate::location::{current_passphrase, with_vault};
use crate::output::{Stdout, stdout_line};
use crate::text::format_time;
use crate::{Failure, fail};

/// A time a filter names, in ms since the Unix epoch.
fn parse_time(s: &str, now_ms: i64) -> Result<i64, Failure> {
    use time::format_description::well_known::Rfc3339;
    let bad = || {
        fail(
            Exit::Usage,
            format!(
                "{s:?}: give an RFC 3339 time, a date (YYYY-MM-DD) or a time ago (30m, 12h, 7d)"
            ),
        )
    };
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let parts: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = parts.as_slice()
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>())
        && let Ok(month) = time::Month::try_from(m)
        && let Ok(date) = time::Date::from_calendar_date(y, month, d)
    {
        return Ok(date.midnight().assume_utc().unix_timestamp() * 1000);
    }
    let split = s.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms)
        .and_then(|d| now_ms.checked_sub(d))
        .ok_or_else(bad)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn outcome(e: &AuditEntry) -> String {
    match e.outcome {
        0 => "ok".into(),
        2 => "error (invalid)".into(),
        3 => "error (wrong passphrase)".into(),
        4 => "error (not found)".into(),
        5 => "error (integrity)".into(),
        6 => "error (busy)".into(),
        7 => "error (conflict)".into(),
        8 => "error (refused by the key)".into(),
        n => format!("error ({n})"),
    }
}

/// The target as printed: the name where the trail keeps names (sealed) and this key opens
/// it, `#` and the hash's first bytes otherwise.
fn target(names: &AuditNames<'_>, e: &AuditEntry) -> String {
    match &e.target {
        AuditTarget::None => "-".into(),
        AuditTarget::Hashed(h) => format!("#{}", hex(h.get(..8).unwrap_or_default())),
        AuditTarget::Sealed { .. } if e.op == AuditOp::KeyHandover => "(keys)".into(),
        AuditTarget::Sealed { .. } => match names.name_of(&e.target) {
            Some((name, true)) => format!("key {}", name.escape_default()),
            Some((name, false)) => name.escape_default().to_string(),
            None => "(sealed under an earlier key)".into(),
        },
    }
}

/// One entry as printed: a table row, or a JSON line.
fn line(names: &AuditNames<'_>, e: &AuditEntry, json: bool) -> String {
    let early = if e.flags & vault_store::audit_flags::BEFORE_UNLOCK != 0 {
        " (recorded before an unlock)"
    } else {
        ""
    };
    if json {
        let mut j = serde_json::json!({
            "index": e.index,
            "time": format_time(e.time_ms),
            "time_ms": e.time_ms,
            "op": e.op.name(),
            "outcome": if e.outcome == 0 { "ok".to_string() } else { outcome(e) },
            "outcome_code": e.outcome,
            "generation": e.generation,
            "pid": e.pid,
            "uid": e.uid,
            "host": e.host,
            "detail": e.detail,
            "before_unlock": !early.is_empty(),
            "by_trail": e.flags & vault_store::audit_flags::TRAIL != 0,
        });
        if let Some(o) = j.as_object_mut() {
            match &e.target {
                AuditTarget::Hashed(h) => {
                    o.insert("target_hash".into(), hex(h).into());
                }
                AuditTarget::Sealed { .. } => {
                    if let Some((name, key)) = names.name_of(&e.target) {
                        o.insert("target".into(), name.into());
                        o.insert(
                            "target_kind".into(),
                            if key { "key" } else { "secret" }.into(),
                        );
                    }
                }
                AuditTarget::None => {}
            }
        }
        format!("{j}\n")
    } else {
        format!(
            "{:>6}  {:<20}  {:<19}  {:<24}  {:<18}  {:<22}  {}{early}\n",
            e.index,
            format_time(e.time_ms),
            e.op.name(),
            outcome(e),
            target(names, e),
            format!("{}@{} uid {}", e.pid, e.host.escape_default(), e.uid),
            e.detail.escape_default(),
        )
    }
}

/// `vault audit [filters]`: entries printed as they are read (the trail is never held whole).
pub(crate) fn query(cli: &Cli, q: &AuditQuery) -> Result<(), Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let since = q.since.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let until = q.until.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let ops =
        q.op.iter()
            .map(|o| {
                AuditOp::from_name(o).ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        format!("unknown operation {o:?} (see vault audit --help)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    if q.name.as_deref() == Some("") {
        return Err(fail(Exit::Usage, "--name needs a name"));
    }
    let pass = current_passphrase(cli)?;
    let out = RefCell::new(Stdout::lock());
    // A write that failed (a closed stdout): kept to return once reading has stopped.
    let failed: RefCell<Option<Failure>> = RefCell::new(None);
    let table = !q.json && crate::output::stdout_is_terminal();
    let trail = with_vault(cli, &pass, false, |v| {
        if table {
            let head = format!(
                "{:>6}  {:<20}  {:<19}  {:<24}  {:<18}  {:<22}  {}\n",
                "index", "time (UTC)", "operation", "outcome", "target", "process", "detail"
            );
            if let Err(e) = out.borrow_mut().write(head.as_bytes()) {
                failed.replace(Some(e));
                return Err(vault_store::Error::Invalid {
                    what: "output",
                    reason: "closed".into(),
                });
            }
        }
        let keep = |e: &AuditEntry, names: &AuditNames<'_>| {
            since.is_none_or(|t| e.time_ms >= t)
                && until.is_none_or(|t| e.time_ms < t)
                && (ops.is_empty() || ops.contains(&e.op))
                && q.outcome
                    .as_deref()
                    .is_none_or(|o| (o == "ok") == (e.outcome == 0))
                && q.name
                    .as_deref()
                    .is_none_or(|n| names.is(&e.target, n, false) || names.is(&e.target, n, true))
        };
        v.audit_each(&mut |e, names| {
            if keep(&e, names)
                && let Err(err) = out.borrow_mut().write(line(names, &e, q.json).as_bytes())
            {
                failed.replace(Some(err));
                return Err(vault_store::Error::Invalid {
                    what: "output",
                    reason: "closed".into(),
                });
            }
            Ok(())
        })
    });
    if let Some(f) = failed.take() {
        return Err(f);
    }
    let trail = trail?;
    out.into_inner().finish()?;
    if let Some((at, why)) = &trail.problem {
        crate::output::stderr_line(format!(
            "warning: the audit trail does not verify from entry {at} on: {why} (run `vault audit verify`)"
        ));
    }
    Ok(())
}

/// A size as `vault audit policy --max-size` takes it: bytes, or with a unit: KiB, MiB, GiB,
/// TiB (and K, M, G, T) in powers of 1024; KB, MB, GB, TB in powers of 1000.
fn parse_size(s: &str) -> Result<u64, Failure> {
    let bad = || {
        fail(
            Exit::Usage,
            format!("{s:?}: give a size such as 64MiB or 1GiB, or \"none\""),
        )
    };
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

fn describe(p: &AuditPolicy) -> String {
    let size = match p.max_bytes {
        0 => "no size limit".to_string(),
        n if n % (1 << 30) == 0 => format!("at most {} GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("at most {} MiB", n >> 20),
        n => format!("at most {n} bytes"),
    };
    let age = match p.max_age_days {
        0 => "no age limit".to_string(),
        1 => "entries kept 1 day".to_string(),
        n => format!("entries kept {n} days"),
    };
    format!(
        "names {}; {size}; {age}",
        if p.names_clear {
            "kept in clear (sealed in each entry)"
        } else {
            "hashed"
        }
    )
}

/// `vault audit policy [--names hashed|clear] [--max-size SIZE|none] [--max-age DAYS|none]`.
pub(crate) fn policy(cli: &Cli, a: &AuditPolicyArgs) -> Result<(), Failure> {
    // Everything that can be checked is checked before the passphrase is asked for.
    let max_bytes = match a.max_size.as_deref() {
        None => None,
        Some("none") => Some(0),
        Some(s) => {
            let n = parse_size(s)?;
            if n < vault_store::audit_flags::MIN_RETAINED_BYTES {
                return Err(fail(Exit::Usage, "--max-size must be at least 1MiB"));
            }
            Some(n)
        }
    };
    let max_age = match a.max_age.as_deref() {
        None => None,
        Some("none") => Some(0),
        Some(s) => Some(match s.parse::<u64>() {
            Ok(0) | Err(_) => {
                return Err(fail(
                    Exit::Usage,
                    format!("--max-age {s:?}: give a number of days (at least 1), or \"none\""),
                ));
            }
            Ok(d) => u32::try_from(d).map_err(|_| {
                fail(
                    Exit::Usage,
                    format!("--max-age {s}: at most {} days", u32::MAX),
                )
            })?,
        }),
    };
    let names = a.names.as_deref().map(|n| n == "clear");
    let change = max_bytes.is_some() || max_age.is_some() || names.is_some();
    let pass = current_passphrase(cli)?;
    let (before, after) = with_vault(cli, &pass, false, |v| {
        let before = v.audit_policy()?;
        if !change {
            return Ok((before, before));
        }
        let after = AuditPolicy {
            names_clear: names.unwrap_or(before.names_clear),
            max_bytes: max_bytes.unwrap_or(before.max_bytes),
            max_age_days: max_age.unwrap_or(before.max_age_days),
        };
        v.set_audit_policy(after)?;
        Ok((before, after))
    })?;
    if a.json {
        return stdout_line(serde_json::json!({
            "names": if after.names_clear { "clear" } else { "hashed" },
            "max_size": after.max_bytes,
            "max_age_days": after.max_age_days,
        }));
    }
    if !change {
        return stdout_line(describe(&after));
    }
    stdout_line(format!("audit policy: {}", describe(&after)))?;
    if before.names_clear != after.names_clear {
        crate::output::stderr_line(
            "note: entries already written keep their names as they were written",
        );
    }
    Ok(())
}

/// `vault audit verify`.
pub(crate) fn verify(cli: &Cli) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let trail = with_vault(cli, &pass, false, |v| v.audit_each(&mut |_, _| Ok(())))?;
    let epochs: Vec<u32> = {
        let mut e: Vec<u32> = trail.files.iter().map(|f| f.epoch).collect();
        e.dedup();
        e
    };
    let files = match (trail.files.len(), epochs.as_slice()) {
        (0, _) => "no files yet".to_string(),
        (1, [e]) => format!("1 file, key epoch {e}"),
        (n, [e]) => format!("{n} files, key epoch {e}"),
        (n, [first, .., last]) => format!("{n} files, key epochs {first} to {last}"),
        (n, _) => format!("{n} files"),
    };
    let retained = trail.retained_from.map_or(String::new(), |i| {
        format!("; entries before {i} removed by retention (the retention entry is in the chain)")
    });
    let pending = if trail.pending > 0 {
        format!(
            "; {} entries recorded before an unlock, not yet folded in",
            trail.pending
        )
    } else {
        String::new()
    };
    for note in &trail.notes {
        crate::output::stderr_line(format!("note: {note}"));
    }
    match &trail.problem {
        None => stdout_line(format!(
            "ok: {} entries, every link verified ({files}){retained}{pending}",
            trail.count,
        )),
        Some((at, why)) => Err(fail(
            Exit::Integrity,
            format!(
                "the audit trail is broken at entry {at}: {why} ({} entries read: {files})",
                trail.count,
            ),
        )),
    }
}

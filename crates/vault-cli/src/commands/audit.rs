//! `vault audit [filters] [--json]` and `vault audit verify`: reading and checking the vault's
//! audit trail (docs/designs/audit.md).

use std::io::IsTerminal;

use vault_store::{AuditEntry, AuditOp, AuditTarget};

use crate::cli::{AuditQuery, Cli};
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

fn target(e: &AuditEntry) -> String {
    match &e.target {
        AuditTarget::None => "-".into(),
        AuditTarget::Hashed(h) => format!("#{}", hex(h.get(..8).unwrap_or_default())),
        AuditTarget::Sealed { .. } => "(sealed name)".into(),
    }
}

/// `vault audit [filters]`.
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
    let pass = current_passphrase(cli)?;
    let (trail, hashes) = with_vault(cli, &pass, false, |v| {
        let hashes = q
            .name
            .as_deref()
            .map(|n| (v.audit_name_hash(n, false), v.audit_name_hash(n, true)));
        Ok((v.audit_trail()?, hashes))
    })?;
    if q.name.as_deref() == Some("") {
        return Err(fail(Exit::Usage, "--name needs a name"));
    }
    let keep = |e: &AuditEntry| {
        since.is_none_or(|t| e.time_ms >= t)
            && until.is_none_or(|t| e.time_ms < t)
            && (ops.is_empty() || ops.contains(&e.op))
            && q.outcome
                .as_deref()
                .is_none_or(|o| (o == "ok") == (e.outcome == 0))
            && hashes.is_none_or(
                |(s, k)| matches!(&e.target, AuditTarget::Hashed(h) if *h == s || *h == k),
            )
    };
    let mut out = Stdout::lock();
    let table = !q.json && std::io::stdout().is_terminal();
    if table {
        out.write(
            format!(
                "{:>6}  {:<20}  {:<19}  {:<24}  {:<18}  {:<22}  {}\n",
                "index", "time (UTC)", "operation", "outcome", "target", "process", "detail"
            )
            .as_bytes(),
        )?;
    }
    for e in trail.entries.iter().filter(|e| keep(e)) {
        let early = if e.flags & vault_store::audit_flags::BEFORE_UNLOCK != 0 {
            " (recorded before an unlock)"
        } else {
            ""
        };
        let line = if q.json {
            let mut v = serde_json::json!({
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
            });
            if let (AuditTarget::Hashed(h), Some(o)) = (&e.target, v.as_object_mut()) {
                o.insert("target_hash".into(), serde_json::Value::String(hex(h)));
            }
            format!("{v}\n")
        } else {
            format!(
                "{:>6}  {:<20}  {:<19}  {:<24}  {:<18}  {:<22}  {}{early}\n",
                e.index,
                format_time(e.time_ms),
                e.op.name(),
                outcome(e),
                target(e),
                format!("{}@{} uid {}", e.pid, e.host.escape_default(), e.uid),
                e.detail.escape_default(),
            )
        };
        out.write(line.as_bytes())?;
    }
    out.finish()?;
    if let Some((at, why)) = &trail.problem {
        crate::output::stderr_line(format!(
            "warning: the audit trail does not verify from entry {at} on: {why} (run `vault audit verify`)"
        ));
    }
    Ok(())
}

/// `vault audit verify`.
pub(crate) fn verify(cli: &Cli) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let trail = with_vault(cli, &pass, false, |v| v.audit_trail())?;
    // One file per key epoch: named when few, counted when many.
    let files: Vec<String> = if trail.files.len() <= 3 {
        trail
            .files
            .iter()
            .map(|(epoch, n)| format!("key epoch {epoch}: {n}"))
            .collect()
    } else {
        let (epoch, n) = trail.files.last().copied().unwrap_or_default();
        vec![format!(
            "{} key epochs' files; the current one, key epoch {epoch}: {n}",
            trail.files.len()
        )]
    };
    let pending = if trail.pending > 0 {
        format!(
            "; {} entries recorded before an unlock, not yet folded in",
            trail.pending
        )
    } else {
        String::new()
    };
    match &trail.problem {
        None => stdout_line(format!(
            "ok: {} entries, every link verified ({}){pending}",
            trail.entries.len(),
            files.join(", ")
        )),
        Some((at, why)) => Err(fail(
            Exit::Integrity,
            format!(
                "the audit trail is broken at entry {at}: {why} ({} entries read: {})",
                trail.entries.len(),
                files.join(", ")
            ),
        )),
    }
}

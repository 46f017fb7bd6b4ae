//! Commands that create, check and maintain a vault: init, verify, compact, accept-rollback.

use std::time::Duration;

use vault_store::Vault;
use vault_store::kdf::{self, KdfParams};

use crate::cli::{Cli, InitArgs};
use crate::exit::Exit;
use crate::location::{
    current_passphrase, options, retry_rekeyed, warn_if_shared_dirs, with_vault,
};
use crate::output::{stderr_line, stdout_line};
use crate::text::kib_text;
use crate::{Failure, fail, passphrase};

pub(crate) fn kdf_params(a: &InitArgs) -> Result<KdfParams, Failure> {
    let lanes = a.kdf_parallelism.unwrap_or(KdfParams::DEFAULT.lanes());
    let params = if let Some(ms) = a.kdf_target_ms {
        stderr_line(format!(
            "calibrating Argon2id for {ms} ms on this machine..."
        ));
        let _bar = crate::progress::Bar::spinner("calibrating Argon2id");
        kdf::calibrate(
            Duration::from_millis(ms),
            KdfParams::DEFAULT
                .memory_kib()
                .max(KdfParams::RECOMMENDED_MIN_MEMORY_KIB),
            lanes,
        )
        .map_err(|e| fail(Exit::Usage, format!("cannot calibrate: {e}")))?
    } else {
        let mem_kib = match a.kdf_memory_mib {
            Some(m) => m
                .checked_mul(1024)
                .ok_or_else(|| fail(Exit::Usage, "--kdf-memory-mib is too large"))?,
            None => KdfParams::DEFAULT.memory_kib(),
        };
        KdfParams::for_key(
            mem_kib,
            a.kdf_iterations.unwrap_or(KdfParams::DEFAULT.iterations()),
            lanes,
        )
        .map_err(|e| fail(Exit::Usage, format!("invalid KDF parameters: {e}")))?
    };
    if params.is_below_recommended() {
        let mut weak = Vec::new();
        if params.memory_kib() < KdfParams::RECOMMENDED_MIN_MEMORY_KIB {
            weak.push(format!(
                "memory {} is below {} MiB",
                kib_text(params.memory_kib()),
                KdfParams::RECOMMENDED_MIN_MEMORY_KIB / 1024
            ));
        }
        if params.iterations() < KdfParams::RECOMMENDED_MIN_ITERATIONS {
            weak.push(format!(
                "{} pass(es) is below {}",
                params.iterations(),
                KdfParams::RECOMMENDED_MIN_ITERATIONS
            ));
        }
        stderr_line(format!(
            "warning: Argon2id {}: fine for tests, weak for real secrets",
            weak.join(" and ")
        ));
    }
    Ok(params)
}

/// `vault init`: create a vault.
pub(crate) fn init(cli: &Cli, a: &InitArgs) -> Result<(), Failure> {
    let place = crate::location::place(cli)?;
    let params = kdf_params(a)?;
    let backend = place.backend();
    // Before the new passphrase is asked for (twice): there is no point typing it for a vault
    // that cannot be made here.
    match &place {
        crate::location::Place::Dir(dir) => {
            warn_if_shared_dirs(cli, dir)?;
            // (A damaged vault, its header gone, is left to `create` to describe.)
            if dir.join("header").exists() {
                return Err(vault_store::Error::AlreadyExists(dir.display().to_string()).into());
            }
        }
        #[cfg(feature = "postgres")]
        crate::location::Place::Db(_) => {
            if backend.exists()? {
                return Err(vault_store::Error::AlreadyExists(backend.location()).into());
            }
        }
    }
    let options = options(cli, false)?;
    let pass = passphrase::new_for_init()?;
    let v = Vault::create(backend.clone(), &pass, params, options)?;
    stderr_line(format!(
        "created vault {} at {} (Argon2id {}, {} iterations, {} lanes)",
        v.vault_id(),
        backend.location(),
        kib_text(params.memory_kib()),
        params.iterations(),
        params.lanes()
    ));
    Ok(())
}

/// `vault verify`.
pub(crate) fn verify(cli: &Cli, json: bool) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    // One pass over the log: the open is the verify.
    let options = options(cli, false)?;
    let bar = crate::progress::Bar::spinner("verifying");
    let (_, r) = retry_rekeyed(cli, |backend| {
        Vault::open_and_verify(backend, &pass, options.clone())
    })?;
    drop(bar);
    if json {
        return stdout_line(serde_json::json!({
            "ok": true,
            "frames": r.frames,
            "records": r.records,
            "generation": r.generation,
            "recorded_generation": r.recorded_generation,
            "secrets": r.secrets,
            "keys": r.keys,
            "reclaimable_bytes": r.superseded_bytes,
            "index_secrets": r.index_secrets,
            "torn_tail": r.torn_tail,
            "warnings": r.warnings,
        }));
    }
    let torn = if r.torn_tail {
        "; the log ends with the torn tail of an interrupted commit (never acknowledged; the next write discards it)"
    } else {
        ""
    };
    let index = r.index_secrets.map_or_else(
        || "; no index that matches the log (commands read the whole log; `vault upgrade` writes one)".to_string(),
        |n| format!("; index of {n} secrets authenticated and matching the log"),
    );
    let warnings: String = r
        .warnings
        .iter()
        .map(|w| format!("; warning: {w} (the next write rewrites it)"))
        .collect();
    stdout_line(format!(
        "{}: {} frames, {} records authenticated; generation {} (rollback record: {}); {} secrets, {} keys; {} bytes reclaimable by compaction{index}{torn}{warnings}",
        if r.warnings.is_empty() {
            "ok"
        } else {
            "ok, with warnings"
        },
        r.frames,
        r.records,
        r.generation,
        r.recorded_generation
            .map_or_else(|| "none".to_string(), |g| format!("generation {g}")),
        r.secrets,
        r.keys,
        r.superseded_bytes
    ))?;
    Ok(())
}

/// `vault compact`.
pub(crate) fn compact(cli: &Cli) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.compact())?;
    stderr_line("compacted");
    Ok(())
}

/// `vault upgrade`.
pub(crate) fn upgrade(cli: &Cli) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.checkpoint())?;
    stderr_line("upgraded: the index is written");
    Ok(())
}

/// `vault accept-rollback`.
pub(crate) fn accept_rollback(cli: &Cli) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let (generation, accepted) = with_vault(cli, &pass, true, |v| {
        Ok((v.generation(), v.accepted_rollback()))
    })?;
    match accepted {
        Some(what) => stderr_line(format!(
            "{what}; now at generation {generation}, and the acceptance is recorded in the vault"
        )),
        None => stderr_line(format!(
            "nothing to accept: the vault (generation {generation}) is not behind its rollback record and its log vouches for its header; the rollback record is rewritten as current"
        )),
    }
    Ok(())
}

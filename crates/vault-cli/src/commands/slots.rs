//! Commands on key slots and the master key: change-, add- and remove-passphrase, slots,
//! rotate-master-key.

use vault_store::KdfParams;

use crate::cli::Cli;
use crate::location::{current_passphrase, with_vault};
use crate::output::{Stdout, Table, stderr_line};
use crate::text::kib_text;
use crate::{Failure, passphrase};

/// `vault change-passphrase`.
pub(crate) fn change_passphrase(cli: &Cli) -> Result<(), Failure> {
    let current = current_passphrase(cli)?;
    let new = passphrase::new_passphrase()?;
    with_vault(cli, &current, false, |v| {
        v.change_passphrase(&current, &new, None)
    })?;
    stderr_line("passphrase changed");
    Ok(())
}

/// `vault add-passphrase`.
pub(crate) fn add_passphrase(cli: &Cli) -> Result<(), Failure> {
    let current = current_passphrase(cli)?;
    let new = passphrase::new_passphrase()?;
    let id = with_vault(cli, &current, false, |v| {
        let kdf = v
            .slots()
            .into_iter()
            .find(|s| s.in_use)
            .and_then(|s| s.kdf)
            .unwrap_or(KdfParams::DEFAULT);
        v.add_passphrase(&current, &new, kdf)
    })?;
    stderr_line(format!("added key slot {id}"));
    Ok(())
}

/// `vault remove-passphrase`.
pub(crate) fn remove_passphrase(cli: &Cli, slot: &u16, yes: bool) -> Result<(), Failure> {
    if !yes {
        crate::output::confirm(
            &format!("remove key slot {slot}? Its passphrase will no longer open the vault."),
            "remove-passphrase",
        )?;
    }
    let current = current_passphrase(cli)?;
    with_vault(cli, &current, false, |v| v.remove_slot(&current, *slot))?;
    stderr_line(format!("removed key slot {slot}"));
    Ok(())
}

/// `vault slots`.
pub(crate) fn slots(cli: &Cli, json: bool) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let slots = with_vault(cli, &pass, false, |v| Ok(v.slots()))?;
    if !json {
        let mut table = Table::new();
        for s in slots {
            let what = match s.kdf {
                Some(k) => format!(
                    "argon2id m={} t={} p={}",
                    kib_text(k.memory_kib()),
                    k.iterations(),
                    k.lanes()
                ),
                None => format!("kind {} (not used by this version)", s.kind),
            };
            let what = match &s.member {
                Some((name, state)) => {
                    let state = format!("{state:?}").to_lowercase();
                    format!("member {name} ({state}), {what}")
                }
                None => what,
            };
            let mut row = vec![s.id.to_string(), what];
            if s.in_use {
                row.push("(unlocked with)".into());
            }
            table.row(row)?;
        }
        return table.finish();
    }
    let mut out = Stdout::lock();
    for s in slots {
        {
            let kdf = s.kdf.map(|k| {
                serde_json::json!({
                    "memory_kib": k.memory_kib(),
                    "iterations": k.iterations(),
                    "lanes": k.lanes(),
                })
            });
            let line = serde_json::json!({
                "id": s.id,
                "kind": s.kind,
                "member": s.member.as_ref().map(|(name, _)| name),
                "kdf": kdf,
                "in_use": s.in_use,
            });
            out.write(format!("{line}\n").as_bytes())?;
        }
    }
    out.finish()?;
    Ok(())
}

/// `vault rotate-master-key`.
pub(crate) fn rotate_master_key(cli: &Cli, drop_other_slots: &bool) -> Result<(), Failure> {
    let current = current_passphrase(cli)?;
    with_vault(cli, &current, false, |v| {
        v.rotate_master_key(&current, *drop_other_slots)
    })?;
    stderr_line("master key rotated; every record re-encrypted");
    Ok(())
}

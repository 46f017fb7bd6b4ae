//! `vault member add|join|list|remove`: a team vault's members, each with a key slot of their
//! own.

use vault_store::{KdfParams, MemberState, SecretBytes, Vault};

use crate::cli::{Cli, MemberCommand};
use crate::location::{current_passphrase, options, retry_rekeyed, with_vault};
use crate::output::{Stdout, Table, stderr_line};
use crate::{Failure, passphrase};

/// An invitation code's bytes: 256 random bits, so Argon2id adds nothing to guessing it; the
/// cheapest parameters keep joining quick.
const INVITATION_KDF: (u32, u32, u32) = (1024, 1, 1);

/// Runs a `vault member` command.
pub(crate) fn run(cli: &Cli, command: &MemberCommand) -> Result<(), Failure> {
    match command {
        MemberCommand::Add { name, invite, me } => add(cli, name, *invite, *me),
        MemberCommand::Join { name } => join(cli, name),
        MemberCommand::List { json } => list(cli, *json),
        MemberCommand::Remove {
            name,
            yes,
            drop_other_slots,
        } => remove(cli, name, *yes, *drop_other_slots),
    }
}

/// The Argon2id parameters the vault's members use: those of the slot the caller opened with
/// (an invitation's are cheap on purpose and never copied), else the vault's first joined slot.
fn member_kdf(v: &Vault) -> KdfParams {
    let slots = v.slots();
    let usable = |s: &&vault_store::SlotInfo| {
        !matches!(
            s.member,
            Some((_, MemberState::Invited | MemberState::Removed))
        )
    };
    slots
        .iter()
        .filter(usable)
        .find(|s| s.in_use)
        .or_else(|| slots.iter().find(usable))
        .and_then(|s| s.kdf)
        .unwrap_or(KdfParams::DEFAULT)
}

fn invitation() -> Result<(String, SecretBytes), Failure> {
    let bytes = vault_store::SecretBytes::new(
        vault_crypto::rng::bytes::<32>()
            .map_err(|e| crate::failure::fail(crate::exit::Exit::Other, e.to_string()))?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    );
    // Shown in groups of eight for copying by hand; the dashes are not part of the secret.
    let shown = bytes
        .expose_secret()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-");
    Ok((shown, bytes))
}

fn add(cli: &Cli, name: &str, invite: bool, me: bool) -> Result<(), Failure> {
    let current = current_passphrase(cli)?;
    if me {
        with_vault(cli, &current, false, |v| v.become_member(&current, name))?;
        stderr_line(format!(
            "your key slot is now member {name}'s (the passphrase is unchanged); unlock with --member {name}"
        ));
        return Ok(());
    }
    if invite {
        let (shown, code) = invitation()?;
        let (m, t, p) = INVITATION_KDF;
        let kdf = KdfParams::for_key(m, t, p).map_err(|e| {
            crate::failure::fail(
                crate::exit::Exit::Other,
                format!("invitation parameters: {e}"),
            )
        })?;
        let slot = with_vault(cli, &current, false, |v| {
            v.add_member(&current, name, &code, kdf, true)
        })?;
        stderr_line(format!(
            "invited member {name} (key slot {slot}). Give them this one-time code by a channel you trust; they run `vault member join {name}`, enter it and choose their passphrase:"
        ));
        let mut out = Stdout::lock();
        let shown_ok = out
            .write(format!("{shown}\n").as_bytes())
            .and_then(|()| out.finish());
        if let Err(failed) = shown_ok {
            // A code nobody saw is of no use, and would block inviting them again.
            match with_vault(cli, &current, false, |v| {
                v.withdraw_invitation(&current, name)
            }) {
                Ok(()) => stderr_line(format!(
                    "the code could not be shown, so the invitation of {name} was withdrawn"
                )),
                Err(e) => stderr_line(format!(
                    "the code could not be shown, and the invitation of {name} could not be withdrawn ({}); remove it with `vault member remove {name}`",
                    e.message.unwrap_or_default()
                )),
            }
            return Err(failed);
        }
        return Ok(());
    }
    let new = passphrase::new_passphrase()?;
    let slot = with_vault(cli, &current, false, |v| {
        let kdf = member_kdf(v);
        v.add_member(&current, name, &new, kdf, false)
    })?;
    stderr_line(format!(
        "added member {name} (key slot {slot}); they unlock with --member {name} (or VAULT_MEMBER={name})"
    ));
    Ok(())
}

fn join(cli: &Cli, name: &str) -> Result<(), Failure> {
    crate::location::existing_backend(cli)?;
    let code = passphrase::invitation_code()?;
    // Only the invitation's slot is tried, and the code opens nothing else.
    let options = vault_store::VaultOptions {
        member: Some(name.to_string()),
        join: true,
        ..options(cli, false)?
    };
    let open = |backend| {
        Vault::open(backend, &code, options.clone()).map_err(|e| match e {
            vault_store::Error::WrongPassphrase => vault_store::Error::Invalid {
                what: "invitation code",
                reason: format!(
                    "it does not open {name}'s invitation (mistyped, or not the code {name} was invited with)"
                ),
            },
            other => other,
        })
    };
    // The code is checked before the new passphrase is asked for (an invitation's key
    // derivation is cheap): nobody types a passphrase for a join that cannot happen.
    retry_rekeyed(cli, |backend| open(backend).map(drop))?;
    let new = passphrase::new_passphrase()?;
    retry_rekeyed(cli, |backend| {
        let v = open(backend)?;
        let kdf = member_kdf(&v);
        v.change_passphrase(&code, &new, Some(kdf))
    })?;
    stderr_line(format!(
        "joined as member {name}: your passphrase now opens your key slot (a new key pair; the invitation code opens nothing); unlock with --member {name}"
    ));
    Ok(())
}

fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Joined => "joined",
        MemberState::Invited => "invited",
        MemberState::Removed => "removed",
    }
}

fn list(cli: &Cli, json: bool) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let members = with_vault(cli, &pass, false, |v| Ok(v.members()))?;
    if json {
        let mut out = Stdout::lock();
        for m in members {
            let line = serde_json::json!({
                "name": m.name,
                "state": state_name(m.state),
                "slot": m.slot,
                "you": m.in_use,
                "added_by": m.added_by,
                "vouched": m.vouched,
            });
            out.write(format!("{line}\n").as_bytes())?;
        }
        return out.finish();
    }
    if members.is_empty() {
        stderr_line(
            "no members: this vault's key slots are passphrase slots (`vault slots`); `vault member add NAME --me` makes yours a member's",
        );
    }
    let mut table = Table::new();
    for m in members {
        let mut row = vec![
            m.name,
            state_name(m.state).to_string(),
            format!("slot {}", m.slot),
        ];
        if m.in_use {
            row.push("(you)".into());
        }
        if let Some(a) = m.added_by {
            row.push(if m.vouched {
                format!("added by {a}")
            } else {
                format!("added by {a}, through a member no longer here")
            });
        }
        table.row(row)?;
    }
    table.finish()
}

fn remove(cli: &Cli, name: &str, yes: bool, drop_other_slots: bool) -> Result<(), Failure> {
    if !yes {
        crate::output::confirm(
            &format!(
                "remove member {name}? Their key slot goes and the master key is rotated (every record re-encrypted)."
            ),
            "member remove",
        )?;
    }
    let current = current_passphrase(cli)?;
    let removed = with_vault(cli, &current, false, |v| {
        v.remove_member(&current, name, drop_other_slots)
    });
    let removal = match removed {
        Ok(r) => r,
        Err(e) => {
            // Refusals (a name not there, a usage error) changed nothing; anything else may
            // have come after the slot was marked.
            if !matches!(
                e.code,
                crate::exit::Exit::Usage | crate::exit::Exit::NotFound
            ) {
                stderr_line(format!(
                    "note: if `vault member list` shows {name} as removed, their slot already opens nothing, but the master key is not rotated yet: the next command that writes finishes it, and writes are refused until it can"
                ));
            }
            return Err(e);
        }
    };
    if !removal.withdrawn.is_empty() {
        stderr_line(format!(
            "outstanding invitations withdrawn (their codes may be known to {name}): {}; invite them again",
            removal.withdrawn.join(", ")
        ));
    }
    if !removal.unvouched.is_empty() {
        stderr_line(format!(
            "warning: these members were added, directly or through others, by members no longer in the vault, and stay members: {}. If you do not know them for other people, they may belong to a removed member: remove them too",
            removal.unvouched.join(", ")
        ));
    }
    if !removal.rotated_keys.is_empty() {
        stderr_line(format!(
            "managed keys given a new primary version ({name} could read their material, as any member can; older versions now only decrypt and verify): {}",
            removal.rotated_keys.join(", ")
        ));
    }
    if !removal.unrotated_keys.is_empty() {
        stderr_line(format!(
            "warning: managed keys not rotated: {}; rotate them (`vault key rotate NAME`)",
            removal.unrotated_keys.join(", ")
        ));
    }
    let db = !matches!(crate::location::place(cli)?, crate::location::Place::Dir(_));
    stderr_line(format!(
        "removed member {name}: master key rotated, every record re-encrypted; their passphrase opens nothing now{}",
        if db {
            ". Drop their database role too (docs/OPERATIONS.md)"
        } else {
            ""
        }
    ));
    Ok(())
}

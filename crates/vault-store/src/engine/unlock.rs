//! Unlocking a header's master key with a passphrase, refusing key slots whose Argon2id cost
//! exceeds the caller's limit before running them (a hostile header could otherwise make every
//! open take hours).

use vault_crypto::kdf::KdfParams;
use vault_crypto::{Key256, SecretBytes};
use vault_format::{MemberState, VaultHeader};

use crate::{Error, Result};

/// The most Argon2id work accepted from a vault file before trying a key slot, as age's
/// `--max-work-factor` does for scrypt. The defaults admit every vault this crate's own defaults
/// and calibration produce for targets up to about 15 seconds on a current machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfLimit {
    /// Most memory, in KiB.
    pub max_memory_kib: u32,
    /// Most memory × passes, in KiB × passes.
    pub max_cost: u64,
}

impl KdfLimit {
    /// 1 GiB of memory, and memory × passes up to 32 GiB (256 MiB × 128 passes).
    pub const DEFAULT: Self = Self {
        max_memory_kib: 1024 * 1024,
        max_cost: 32 * 1024 * 1024,
    };

    /// No limit beyond the format's own bounds.
    pub const UNLIMITED: Self = Self {
        max_memory_kib: u32::MAX,
        max_cost: u64::MAX,
    };

    /// Why `params` exceed this limit, if they do.
    pub fn refusal(&self, params: &KdfParams) -> Option<String> {
        let memory = params.memory_kib();
        let cost = u64::from(memory) * u64::from(params.iterations());
        if memory > self.max_memory_kib {
            Some(format!(
                "Argon2id memory {} MiB is over the limit of {} MiB",
                memory / 1024,
                self.max_memory_kib / 1024
            ))
        } else if cost > self.max_cost {
            Some(format!(
                "Argon2id cost {} MiB x {} passes = {} MiB-passes is over the limit of {} MiB-passes",
                memory / 1024,
                params.iterations(),
                cost / 1024,
                self.max_cost / 1024
            ))
        } else {
            None
        }
    }

    /// Refuses `params` for a new key slot that this limit could not open.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the parameter.
    pub fn check_new(&self, params: &KdfParams) -> Result<()> {
        match self.refusal(params) {
            Some(reason) => Err(Error::invalid(
                "KDF parameters",
                format!(
                    "{reason}: a vault opened under this limit could not use the slot; raise the limit"
                ),
            )),
            None => Ok(()),
        }
    }
}

impl Default for KdfLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What opens a vault: a passphrase today; a member's key or material from an agent are other
/// kinds of key slot to come, and will be other variants here.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Unlock<'a> {
    /// A passphrase, tried against the passphrase slots.
    Passphrase(&'a SecretBytes),
}

/// Which slots an open tries: one member's only, and invitations only (to join) or never.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pick<'a> {
    pub(crate) member: Option<&'a str>,
    pub(crate) join: bool,
}

impl<'a> Pick<'a> {
    pub(crate) fn of(options: &'a crate::VaultOptions) -> Self {
        Self {
            member: options.member.as_deref(),
            join: options.join,
        }
    }
}

/// Tries each slot that `input` can open, within `limit`; returns the master key and the id of the
/// slot that opened, after verifying the header MAC. The cost limit bounds the whole open, not
/// each slot: a slot is not tried if its cost added to that of the slots tried before it would
/// exceed the limit (so extra slots, each within the limit, cannot add up to hours).
///
/// # Errors
/// [`Error::WrongPassphrase`] if no slot opens and none was refused; [`Error::KdfLimit`] naming
/// the first refused slot if none opens and some were refused; an integrity error if a slot
/// opens but the header MAC fails (a slot was inserted or changed).
pub(crate) fn unlock(
    header: &VaultHeader,
    input: Unlock<'_>,
    limit: &KdfLimit,
    pick: Pick<'_>,
) -> Result<(Key256, u16)> {
    let Unlock::Passphrase(passphrase) = input;
    let member = pick.member;
    let mut refused: Option<(u16, String)> = None;
    let mut spent = 0u64;
    let is_member =
        |slot: &vault_format::KeySlot, name: &str| slot.member().is_some_and(|(n, _)| n == name);
    if let Some(name) = member {
        match header
            .slots
            .iter()
            .find_map(|s| s.member().filter(|(n, _)| *n == name))
        {
            None => {
                return Err(Error::NotFound {
                    what: format!("member {name}"),
                });
            }
            Some((_, MemberState::Removed)) => {
                return Err(Error::NotFound {
                    what: format!("member {name} (removed from the vault)"),
                });
            }
            Some((_, MemberState::Invited)) if !pick.join => {
                return Err(Error::invalid(
                    "member",
                    format!(
                        "{name} is invited and has not joined: the invitation code opens the vault only to join (`vault member join {name}`)"
                    ),
                ));
            }
            Some((_, MemberState::Joined)) if pick.join => {
                return Err(Error::NotFound {
                    what: format!("an invitation for {name} (joined already)"),
                });
            }
            Some(_) => {}
        }
    }
    for slot in &header.slots {
        // A removed member's slot opens nothing: no key derivation is spent on it. An
        // invitation's code opens the vault only to join, and joining opens nothing else.
        let state = slot.member().map(|(_, state)| state);
        if member.is_some_and(|name| !is_member(slot, name))
            || state == Some(MemberState::Removed)
            || (state == Some(MemberState::Invited)) != pick.join
        {
            continue;
        }
        // Only passphrase slots open with a passphrase; other kinds are never tried here.
        let Some(kdf) = slot.kdf() else {
            continue;
        };
        let cost = u64::from(kdf.memory_kib()) * u64::from(kdf.iterations());
        let over_budget = (spent.saturating_add(cost) > limit.max_cost).then(|| {
            format!(
                "with the slots tried before it the Argon2id cost would reach {} MiB-passes, over the limit of {} MiB-passes for one open",
                spent.saturating_add(cost) / 1024,
                limit.max_cost / 1024
            )
        });
        if let Some(reason) = limit.refusal(&kdf).or(over_budget) {
            tracing::warn!(slot = slot.id, %reason, "not trying a key slot over the KDF limit");
            refused.get_or_insert((slot.id, reason));
            continue;
        }
        spent = spent.saturating_add(cost);
        let started = std::time::Instant::now();
        let tried = slot.unlock(
            passphrase.expose_secret(),
            &header.vault_id,
            header.key_epoch,
        );
        tracing::debug!(
            "key slot {}: Argon2id (memory {} KiB, {} passes, {} lanes) took {} ms: {}",
            slot.id,
            kdf.memory_kib(),
            kdf.iterations(),
            kdf.lanes(),
            started.elapsed().as_millis(),
            if tried.is_ok() {
                "it opens"
            } else {
                "it does not open"
            }
        );
        match tried {
            Ok(master) => {
                tracing::info!("unlocked with key slot {}", slot.id);
                header.verify_mac(&master).map_err(|_| {
                    Error::integrity(
                        "vault header",
                        "the header MAC does not verify: the header was modified",
                    )
                })?;
                return Ok((master, slot.id));
            }
            Err(vault_format::Error::Authentication { .. }) => continue,
            Err(e) => return Err(Error::Format(e)),
        }
    }
    match refused {
        Some((slot, detail)) => Err(Error::KdfLimit { slot, detail }),
        None => Err(Error::WrongPassphrase),
    }
}

/// What a handle was opened with, so that a header change or rotation authorised by the same
/// passphrase does not run Argon2id again (a `change-passphrase` then costs two key derivations,
/// the old passphrase's at open and the new one's): the master key, the slot it came from as it
/// was then, and an HMAC of the passphrase under a random key of this handle, so that the
/// passphrase itself is not kept.
pub(crate) struct OpenedWith {
    master: Key256,
    epoch: u32,
    slot: vault_format::KeySlot,
    proof_key: Key256,
    proof: vault_crypto::mac::MacTag,
}

impl OpenedWith {
    /// Locks the pages of the master key and the proof key against swapping; returns how many.
    pub(crate) fn lock_in_memory(&self) -> std::io::Result<usize> {
        self.master.lock_in_memory()?;
        self.proof_key.lock_in_memory()?;
        Ok(2)
    }

    /// Remembers `master`, unlocked from slot `slot_id` of `header` by `passphrase`.
    pub(crate) fn new(
        master: &Key256,
        header: &VaultHeader,
        slot_id: u16,
        passphrase: &SecretBytes,
    ) -> Result<Option<Self>> {
        let Some(slot) = header.slot(slot_id) else {
            return Ok(None);
        };
        let proof_key = Key256::generate()?;
        let proof = vault_crypto::mac::hmac_sha256(
            proof_key.expose_secret(),
            &[passphrase.expose_secret()],
        );
        Ok(Some(Self {
            master: master.duplicate(),
            epoch: header.key_epoch,
            slot: slot.clone(),
            proof_key,
            proof,
        }))
    }

    /// The master key and slot id, if `passphrase` is the one this handle was opened with and
    /// its slot in `header` (read under the writer lock) is still exactly the slot it opened: a
    /// passphrase changed meanwhile by another process no longer counts.
    fn recall(&self, header: &VaultHeader, passphrase: &SecretBytes) -> Option<(Key256, u16)> {
        if header.key_epoch != self.epoch || header.slot(self.slot.id) != Some(&self.slot) {
            return None;
        }
        let again = vault_crypto::mac::hmac_sha256(
            self.proof_key.expose_secret(),
            &[passphrase.expose_secret()],
        );
        again.verify_against(self.proof.as_bytes()).ok()?;
        Some((self.master.duplicate(), self.slot.id))
    }
}

/// Unlocks `header` with `passphrase` for a change: from what the handle remembers when it was
/// opened with that passphrase and the slot is unchanged, else by trying the slots.
pub(crate) fn unlock_for_change(
    remembered: Option<&OpenedWith>,
    header: &VaultHeader,
    passphrase: &SecretBytes,
    limit: &KdfLimit,
    pick: Pick<'_>,
) -> Result<(Key256, u16)> {
    match remembered.and_then(|r| r.recall(header, passphrase)) {
        Some(found) => Ok(found),
        None => unlock(header, Unlock::Passphrase(passphrase), limit, pick),
    }
}

//! The one list of operations that change a vault. The crash harness fails each I/O step of each
//! in turn; the write-order harness checks each leaves nothing unsynced when it returns. A new
//! mutating operation (a key rotation, a restore) is added here once and every harness picks it
//! up.
//
// ok: every unwrap here is in test machinery (a dev-dependency only); a failure is the test's
// finding and should stop it loudly.

use vault_store::{
    Algorithm, Batch, ExportSelection, ImportOptions, KeyOps, KeySpec, KeyState, LoadItem,
    RotateOptions, SetOptions, SnapshotItem, Vault,
};

use crate::dirs::{cheap_kdf, pass, secret};

/// A passphrase a successful passphrase change or slot addition installs.
pub const NEW_PASS: &[u8] = b"the new passphrase";
/// The passphrase of the spare slot that [`MutatingOp::RemovePassphrase`] removes.
pub const SPARE_PASS: &[u8] = b"a spare passphrase";
/// The passphrase every test vault starts with ([`crate::pass`]).
pub const PASS: &[u8] = b"test passphrase";

/// An operation that changes a vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutatingOp {
    /// A new secret.
    Set,
    /// Several sets in one commit, one of them overwriting.
    Batch,
    /// A soft delete.
    Delete,
    /// Restoring a soft-deleted secret.
    Undelete,
    /// Destroying a secret and its versions.
    Destroy,
    /// Changing how many versions are kept.
    MaxVersions,
    /// Rewriting the log.
    Compact,
    /// Changing the passphrase of the slot in use.
    ChangePassphrase,
    /// Adding a key slot.
    AddPassphrase,
    /// Removing a key slot.
    RemovePassphrase,
    /// Master-key rotation.
    Rotate,
    /// Creating a managed key.
    CreateKey,
    /// Rotating a managed key (a new primary version).
    RotateKey,
    /// Promoting a staged key version.
    PromoteKeyVersion,
    /// A managed key version's state change.
    SetKeyState,
    /// Destroying a managed key version's material.
    DestroyKeyVersion,
    /// Loosening a managed key's policy (a settings record and an event).
    SetKeyPolicy,
    /// Importing a key from an export file, under a new name.
    ImportKey,
    /// A restore's write path: a batch of keys and secret versions loaded as given.
    Load,
    /// Writing the index file (a checkpoint of the log).
    Checkpoint,
    /// Adding a team member (a member key slot).
    AddMember,
    /// Removing a team member: their slot marked removed, then the master key rotated.
    RemoveMember,
}

/// The member [`MutatingOp::AddMember`] adds (with [`NEW_PASS`]).
pub const NEW_MEMBER: &str = "new-member";
/// The member [`MutatingOp::RemoveMember`] removes (added with [`SPARE_PASS`]).
pub const SPARE_MEMBER: &str = "spare-member";

/// The oldest version of key "signing" that is neither its primary nor destroyed.
fn spare_version(v: &Vault) -> Option<u32> {
    let k = v.key("signing").ok()?;
    k.versions
        .iter()
        .find(|x| x.version != k.primary && x.state != KeyState::Destroyed)
        .map(|x| x.version)
}

impl MutatingOp {
    /// Every mutating operation.
    pub const ALL: [MutatingOp; 22] = [
        MutatingOp::Set,
        MutatingOp::Batch,
        MutatingOp::Delete,
        MutatingOp::Undelete,
        MutatingOp::Destroy,
        MutatingOp::MaxVersions,
        MutatingOp::Compact,
        MutatingOp::ChangePassphrase,
        MutatingOp::AddPassphrase,
        MutatingOp::RemovePassphrase,
        MutatingOp::Rotate,
        MutatingOp::CreateKey,
        MutatingOp::RotateKey,
        MutatingOp::PromoteKeyVersion,
        MutatingOp::SetKeyState,
        MutatingOp::DestroyKeyVersion,
        MutatingOp::SetKeyPolicy,
        MutatingOp::ImportKey,
        MutatingOp::Load,
        MutatingOp::Checkpoint,
        MutatingOp::AddMember,
        MutatingOp::RemoveMember,
    ];

    /// Brings a vault holding `base0`..`base3` into the state this operation needs (a deleted
    /// secret to undelete, a spare slot to remove, a key to change).
    pub fn prepare(self, v: &Vault) {
        for i in 0..4u8 {
            if v.get(&format!("base{i}")).is_err() {
                v.set(&format!("base{i}"), secret(&[i; 50]), SetOptions::default())
                    .unwrap();
            }
        }
        match self {
            MutatingOp::Undelete => v.delete("base2").unwrap(),
            MutatingOp::RemovePassphrase => {
                v.add_passphrase(&pass(), &secret(SPARE_PASS), cheap_kdf())
                    .unwrap();
            }
            MutatingOp::RemoveMember if !v.members().iter().any(|m| m.name == SPARE_MEMBER) => {
                v.add_member(
                    &pass(),
                    SPARE_MEMBER,
                    &secret(SPARE_PASS),
                    cheap_kdf(),
                    false,
                )
                .unwrap();
            }
            MutatingOp::RotateKey
            | MutatingOp::PromoteKeyVersion
            | MutatingOp::SetKeyState
            | MutatingOp::DestroyKeyVersion
            | MutatingOp::SetKeyPolicy => {
                if v.key("signing").is_err() {
                    let mut spec = KeySpec::new(Algorithm::Ed25519);
                    spec.allowed = Some(KeyOps::SIGN.with(KeyOps::VERIFY));
                    v.create_key("signing", spec).unwrap();
                }
                // A version to change or destroy: neither the primary nor destroyed.
                if spare_version(v).is_none() {
                    v.rotate_key("signing", RotateOptions::default()).unwrap();
                }
                // A staged version to promote.
                let k = v.key("signing").unwrap();
                if k.versions.last().unwrap().state != KeyState::Pending {
                    let stage = RotateOptions {
                        stage: true,
                        keep_active: false,
                    };
                    v.rotate_key("signing", stage).unwrap();
                }
            }
            MutatingOp::ImportKey | MutatingOp::Load if v.key("portable").is_err() => {
                v.create_key("portable", KeySpec::new(Algorithm::HmacSha256))
                    .unwrap();
            }
            _ => {}
        }
    }

    /// Runs the operation on a prepared vault.
    ///
    /// # Errors
    /// Whatever the vault returns.
    pub fn run(self, v: &Vault) -> vault_store::Result<()> {
        match self {
            MutatingOp::Set => v
                .set("new", secret(b"new value"), SetOptions::default())
                .map(|_| ()),
            MutatingOp::Batch => {
                let mut b = Batch::new();
                for i in 0..3 {
                    b.set(
                        &format!("batch{i}"),
                        secret(&[i; 100]),
                        SetOptions::default(),
                    );
                }
                b.set("base0", secret(b"overwritten"), SetOptions::default());
                v.commit(b).map(|_| ())
            }
            MutatingOp::Delete => v.delete("base1"),
            MutatingOp::Undelete => v.undelete("base2"),
            MutatingOp::Destroy => v.destroy("base3"),
            MutatingOp::MaxVersions => v.set_max_versions(1),
            MutatingOp::Compact => v.compact(),
            MutatingOp::ChangePassphrase => v.change_passphrase(&pass(), &secret(NEW_PASS), None),
            MutatingOp::AddPassphrase => v
                .add_passphrase(&pass(), &secret(NEW_PASS), cheap_kdf())
                .map(|_| ()),
            MutatingOp::RemovePassphrase => {
                let spare = v
                    .slots()
                    .into_iter()
                    .find(|s| !s.in_use)
                    .map(|s| s.id)
                    .unwrap_or(u16::MAX);
                v.remove_slot(&pass(), spare)
            }
            MutatingOp::Rotate => v.rotate_master_key(&pass(), false),
            MutatingOp::CreateKey => {
                let n = v.key_names()?.len();
                v.create_key(
                    &format!("new-key-{n}"),
                    KeySpec::new(Algorithm::XChaCha20Poly1305),
                )
                .map(|_| ())
            }
            MutatingOp::RotateKey => v
                .rotate_key("signing", RotateOptions::default())
                .map(|_| ()),
            MutatingOp::PromoteKeyVersion => {
                let latest = v.key("signing")?.versions.last().map_or(1, |x| x.version);
                v.promote_key_version("signing", latest)
            }
            MutatingOp::SetKeyState => {
                let spare = spare_version(v).unwrap_or(1);
                v.set_key_version_state("signing", spare, KeyState::Disabled)
            }
            MutatingOp::DestroyKeyVersion => {
                v.destroy_key_version("signing", spare_version(v).unwrap_or(1))
            }
            MutatingOp::SetKeyPolicy => {
                v.set_key_policy("signing", Algorithm::Ed25519.capable(), true)
            }
            MutatingOp::ImportKey => {
                let file = v
                    .export(
                        &ExportSelection::keys(&["portable".to_string()]),
                        b"export",
                        cheap_kdf(),
                    )?
                    .file;
                let n = v.key_names()?.len();
                let options = ImportOptions {
                    rename: Some(format!("imported-{n}")),
                    ..ImportOptions::default()
                };
                v.import_export(&file, b"export", &options).map(|_| ())
            }
            MutatingOp::Load => {
                // What a restore writes: a key taken whole from a snapshot (under a new name)
                // and secret versions with their own numbers, and the restore's event.
                let n = v.key_names()?.len();
                let mut items = Vec::new();
                v.snapshot(None, &mut |item| {
                    match item {
                        SnapshotItem::Key(mut k, mut versions) if items.is_empty() => {
                            k.name = format!("loaded-{n}");
                            versions.iter_mut().for_each(|x| x.name.clone_from(&k.name));
                            items.push(LoadItem::Key(k, versions));
                        }
                        SnapshotItem::Version(mut s) if s.name == "base0" => {
                            s.name = format!("loaded/{n}");
                            items.push(LoadItem::Version(s));
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
                v.load(items, Some("loaded by the test harness".into()))
            }
            MutatingOp::Checkpoint => v.checkpoint(),
            MutatingOp::AddMember => v
                .add_member(&pass(), NEW_MEMBER, &secret(NEW_PASS), cheap_kdf(), false)
                .map(|_| ()),
            MutatingOp::RemoveMember => v.remove_member(&pass(), SPARE_MEMBER, false).map(|_| ()),
        }
    }

    /// The passphrases that must open the vault afterwards, whether the operation took effect
    /// (`succeeded`) or not.
    pub fn passphrases_after(self, succeeded: bool) -> Vec<&'static [u8]> {
        match (self, succeeded) {
            (MutatingOp::ChangePassphrase, true) => vec![NEW_PASS],
            (MutatingOp::AddPassphrase | MutatingOp::AddMember, true) => vec![PASS, NEW_PASS],
            (MutatingOp::RemovePassphrase, false) => vec![PASS, SPARE_PASS],
            // A removal interrupted after the member's slot was marked opens with the owner's
            // passphrase only, as a finished one does.
            _ => vec![PASS],
        }
    }

    /// Brings a vault this operation ran on back to the starting slots: the one slot in use, with
    /// [`PASS`] (a passphrase change is undone, added slots removed), so that any operation can
    /// follow.
    pub fn settle(v: &Vault) {
        // Cheap KDF parameters: trying the new passphrase costs little when it is not the one.
        let _ = v.change_passphrase(&secret(NEW_PASS), &pass(), None);
        for slot in v.slots().into_iter().filter(|s| !s.in_use) {
            match slot.member {
                None => v.remove_slot(&pass(), slot.id).unwrap(),
                // A member goes with a rotation (a removed one's slot with the next).
                Some((name, _)) => {
                    if v.members().iter().any(|m| m.name == name) {
                        v.remove_member(&pass(), &name, false).unwrap();
                    }
                }
            }
        }
        v.finish_removals(&pass(), false).unwrap();
    }

    /// Whether the operation commits (moves the generation on): all but those that only rewrite
    /// what is there (compaction, the index).
    pub fn commits(self) -> bool {
        !matches!(self, MutatingOp::Compact | MutatingOp::Checkpoint)
    }

    /// Whether the operation changes the secrets a listing shows (the crash harness checks that
    /// such an operation did change them).
    pub fn changes_secrets(self) -> bool {
        matches!(
            self,
            MutatingOp::Set
                | MutatingOp::Batch
                | MutatingOp::Delete
                | MutatingOp::Undelete
                | MutatingOp::Destroy
                | MutatingOp::MaxVersions
        )
    }
}

//! Team members: each unlocks with a slot of their own; removing one rotates the master key so
//! that their passphrase, and a copy of their old slot, open nothing written afterwards; an
//! interrupted removal is finished later and never leaves a record readable by neither key.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::sync::Arc;

use common::*;
use vault_format::VaultHeader;
use vault_store::{
    Error, FileBackend, FileBackendOptions, MemberState, SecretBytes, SetOptions, Vault,
    VaultOptions,
};

fn member_pass(i: usize) -> SecretBytes {
    secret(format!("passphrase of member {i}").as_bytes())
}

fn as_member_at(options: &VaultOptions, name: &str) -> VaultOptions {
    VaultOptions {
        member: Some(name.to_string()),
        ..options.clone()
    }
}

fn as_member(d: &TestDir, name: &str) -> VaultOptions {
    VaultOptions {
        member: Some(name.to_string()),
        ..d.options()
    }
}

#[test]
fn fifty_members_each_open_with_their_own_passphrase_and_a_removed_one_opens_nothing() {
    let d = TestDir::new();
    let owner = d.create();
    owner
        .set("db/password", secret(b"before"), SetOptions::default())
        .unwrap();
    for i in 0..50 {
        owner
            .add_member(
                &pass(),
                &format!("m{i}"),
                &member_pass(i),
                cheap_kdf(),
                false,
            )
            .unwrap();
    }
    assert_eq!(owner.members().len(), 50);
    // The owner's passphrase slot could not be carried over by another member's rotation: the
    // owner becomes a member (same passphrase).
    assert!(matches!(
        Vault::open(d.backend(), &member_pass(3), as_member(&d, "m3"))
            .unwrap()
            .remove_member(&member_pass(3), "m7", false)
            .map(|_| ()),
        Err(Error::Invalid { .. })
    ));
    owner.become_member(&pass(), "owner").unwrap();
    assert_eq!(owner.members().len(), 51);
    for i in [0, 17, 49] {
        let v = Vault::open(
            d.backend(),
            &member_pass(i),
            as_member(&d, &format!("m{i}")),
        )
        .unwrap();
        assert_eq!(
            v.get("db/password").unwrap().value.expose_secret(),
            b"before"
        );
        // Another member's passphrase does not open this member's slot.
        assert!(matches!(
            Vault::open(
                d.backend(),
                &member_pass(i + 1),
                as_member(&d, &format!("m{i}"))
            ),
            Err(Error::WrongPassphrase)
        ));
    }
    let old_header = VaultHeader::decode(&d.backend().read_header().unwrap()).unwrap();

    // Member 3 removes member 7.
    let m3 = Vault::open(d.backend(), &member_pass(3), as_member(&d, "m3")).unwrap();
    assert_eq!(
        m3.remove_member(&member_pass(3), "m7", false).unwrap(),
        vault_store::Removal::default()
    );
    assert!(m3.pending_removals().is_empty());
    assert_eq!(m3.members().len(), 50);
    m3.set("db/password", secret(b"after"), SetOptions::default())
        .unwrap();

    // Their passphrase opens nothing, whether named or tried against every slot.
    assert!(matches!(
        Vault::open(d.backend(), &member_pass(7), as_member(&d, "m7")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Vault::open(d.backend(), &member_pass(7), d.options()),
        Err(Error::WrongPassphrase)
    ));
    // A copy of their old slot gives the old master key, which opens no slot's wrap and no
    // header MAC of the new epoch: nothing written from now on is under it.
    let (old_master, _) = old_header.unlock(&member_pass(7)).unwrap();
    let new_header = VaultHeader::decode(&d.backend().read_header().unwrap()).unwrap();
    assert_eq!(new_header.key_epoch, old_header.key_epoch + 1);
    assert!(new_header.verify_mac(&old_master).is_err());
    // Every remaining member (and the owner) sees every secret, the one written after too.
    for i in (0..50).filter(|i| *i != 7) {
        let v = Vault::open(
            d.backend(),
            &member_pass(i),
            as_member(&d, &format!("m{i}")),
        )
        .unwrap();
        assert_eq!(
            v.get("db/password").unwrap().value.expose_secret(),
            b"after"
        );
    }
    assert_eq!(
        d.open()
            .unwrap()
            .get("db/password")
            .unwrap()
            .value
            .expose_secret(),
        b"after"
    );
    d.open().unwrap().verify().unwrap();
}

#[test]
fn a_member_cannot_remove_themselves_and_a_name_is_taken_once() {
    let (_, v) = memory();
    v.add_member(&pass(), "bob", &secret(b"bob"), cheap_kdf(), false)
        .unwrap();
    assert!(matches!(
        v.add_member(&pass(), "bob", &secret(b"x"), cheap_kdf(), false),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        v.add_member(&pass(), "bad name", &secret(b"x"), cheap_kdf(), false),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        v.remove_member(&pass(), "nobody", false),
        Err(Error::NotFound { .. })
    ));
    // Opened as bob, bob cannot remove bob.
    assert!(matches!(
        v.remove_member(&secret(b"bob"), "bob", false),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(v.members()[0].state, MemberState::Joined);
    // Names that differ only in letter case are refused.
    assert!(matches!(
        v.add_member(&pass(), "BOB", &secret(b"x"), cheap_kdf(), false),
        Err(Error::Invalid { .. })
    ));
    // In a vault with members, no plain passphrase slot can be added: one a member gave
    // themselves would outlive their removal with no adder recorded.
    assert!(matches!(
        v.add_passphrase(&secret(b"bob"), &secret(b"backdoor"), cheap_kdf()),
        Err(Error::Invalid { .. })
    ));
    // A member's slot is not removed as a plain slot (that would not rotate the master key).
    let bob = v.members()[0].slot;
    assert!(matches!(
        v.remove_slot(&pass(), bob),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn an_invitation_code_opens_the_vault_only_to_join() {
    let d = TestDir::new();
    let owner = d.create();
    owner
        .add_member(&pass(), "dave", &secret(b"the code"), cheap_kdf(), true)
        .unwrap();
    // Not for ordinary use, named or not.
    assert!(Vault::open(d.backend(), &secret(b"the code"), as_member(&d, "dave")).is_err());
    assert!(matches!(
        Vault::open(d.backend(), &secret(b"the code"), d.options()),
        Err(Error::WrongPassphrase)
    ));
    let join = VaultOptions {
        join: true,
        ..as_member(&d, "dave")
    };
    // Joining tries the invitation only: the owner's passphrase does not open it.
    assert!(Vault::open(d.backend(), &pass(), join.clone()).is_err());
    Vault::open(d.backend(), &secret(b"the code"), join.clone()).unwrap();
    // Removing any member withdraws outstanding invitations.
    owner
        .add_member(&pass(), "erin", &secret(b"erin"), cheap_kdf(), false)
        .unwrap();
    assert_eq!(
        owner
            .remove_member(&pass(), "erin", false)
            .unwrap()
            .withdrawn,
        vec!["dave"]
    );
    assert!(Vault::open(d.backend(), &secret(b"the code"), join).is_err());
    assert!(owner.members().is_empty());
}

#[test]
fn an_invited_member_joins_with_the_code_and_their_own_passphrase_and_the_code_then_opens_nothing()
{
    let d = TestDir::new();
    let owner = d.create();
    owner
        .add_member(
            &pass(),
            "carol",
            &secret(b"invitation code"),
            cheap_kdf(),
            true,
        )
        .unwrap();
    assert_eq!(owner.members()[0].state, MemberState::Invited);
    let invited = Vault::open(
        d.backend(),
        &secret(b"invitation code"),
        VaultOptions {
            join: true,
            ..as_member(&d, "carol")
        },
    )
    .unwrap();
    invited
        .change_passphrase(&secret(b"invitation code"), &secret(b"carol's own"), None)
        .unwrap();
    assert_eq!(invited.members()[0].state, MemberState::Joined);
    assert!(matches!(
        Vault::open(
            d.backend(),
            &secret(b"invitation code"),
            as_member(&d, "carol")
        ),
        Err(Error::WrongPassphrase)
    ));
    Vault::open(d.backend(), &secret(b"carol's own"), as_member(&d, "carol")).unwrap();
    // A rotation by the owner carries carol over without her passphrase.
    owner.rotate_master_key(&pass(), false).unwrap();
    Vault::open(d.backend(), &secret(b"carol's own"), as_member(&d, "carol")).unwrap();
}

/// The removal fails at every write, fsync, rename and create in turn: whatever was done, the
/// owner and the remaining member open every secret, the removed member opens nothing once
/// their slot is marked, and a later `finish_removals` completes what was interrupted.
#[test]
fn an_interrupted_removal_is_finished_later_and_loses_nothing() {
    let template = TestDir::new();
    {
        let v = template.create();
        for i in 0..6u8 {
            v.set(&format!("s{i}"), secret(&[i; 300]), SetOptions::default())
                .unwrap();
        }
        // A plain passphrase slot from before the vault had members (whose holder cannot be
        // told): dropped, with --drop-other-slots, in the header change that marks the
        // removal.
        v.add_passphrase(&pass(), &secret(b"backdoor"), cheap_kdf())
            .unwrap();
        v.create_key(
            "k",
            vault_store::KeySpec::new(vault_store::Algorithm::XChaCha20Poly1305),
        )
        .unwrap();
        for name in ["stays", "goes"] {
            v.add_member(&pass(), name, &secret(name.as_bytes()), cheap_kdf(), false)
                .unwrap();
        }
        // Before the removal, "goes" issues an invitation whose code they keep.
        let goes = Vault::open(
            template.backend(),
            &secret(b"goes"),
            as_member(&template, "goes"),
        )
        .unwrap();
        goes.add_member(
            &secret(b"goes"),
            "puppet",
            &secret(b"kept code"),
            cheap_kdf(),
            true,
        )
        .unwrap();
    }
    let mut pending_seen = 0;
    let mut k = 1;
    loop {
        let root = tempfile::tempdir().unwrap();
        copy_dir(&template.vault_dir(), &root.path().join("vault"));
        copy_dir(&template.state_dir(), &root.path().join("state"));
        let options = VaultOptions {
            rollback_dir: Some(root.path().join("state")),
            snapshot_part_bytes: 512,
            ..VaultOptions::default()
        };
        let faulty = Arc::new(FaultyIo::new(&FaultyIo::ALL, k, true, FaultKind::Eio));
        let backend = Arc::new(FileBackend::with_options(
            root.path().join("vault"),
            FileBackendOptions {
                io: Arc::new(SharedFaultyIo(faulty.clone())),
            },
        ));
        // A handle opened before the removal (an agent, say): once the slot is marked, it
        // writes nothing under the key "goes" may hold.
        let early = Vault::open(
            Arc::new(FileBackend::new(root.path().join("vault"))),
            &secret(b"stays"),
            as_member_at(&options, "stays"),
        )
        .unwrap();
        let result = Vault::open(backend, &pass(), options.clone())
            .and_then(|v| v.remove_member(&pass(), "goes", true));
        faulty.heal();
        let real = || Arc::new(FileBackend::new(root.path().join("vault")));
        let early_write = early.set("early", secret(b"x"), SetOptions::default());
        if !Vault::open(real(), &pass(), options.clone())
            .unwrap()
            .pending_removals()
            .is_empty()
        {
            assert!(
                matches!(early_write, Err(Error::RemovalPending { .. })),
                "k={k}: a write went in while the removal was pending: {early_write:?}"
            );
            // Nor a token made with material "goes" may hold.
            let token = early.encrypt("k", b"new data", b"");
            assert!(
                matches!(token, Err(Error::RemovalPending { .. })),
                "k={k}: a token was made while the removal was pending"
            );
        }
        let owner = Vault::open(real(), &pass(), options.clone()).unwrap();
        let pending = owner.pending_removals();
        match &result {
            Ok(_) => assert!(pending.is_empty(), "k={k}"),
            Err(_) => {
                if !pending.is_empty() {
                    pending_seen += 1;
                }
            }
        }
        let gone = owner.members().iter().all(|m| m.name != "goes") || !pending.is_empty();
        let opens = |p: &[u8], join: Option<&str>| {
            Vault::open(
                real(),
                &secret(p),
                VaultOptions {
                    member: join.map(str::to_string),
                    join: join.is_some(),
                    ..options.clone()
                },
            )
            .is_ok()
        };
        if gone {
            // Their passphrase, the slot they gave themselves and the invitation they issued
            // all went in the one header change that marked them.
            assert!(
                !opens(b"goes", None),
                "k={k}: the removed member still opens"
            );
            assert!(!opens(b"backdoor", None), "k={k}: their own slot survived");
            assert!(
                !opens(b"kept code", Some("puppet")),
                "k={k}: their invitation survived"
            );
        }
        owner.finish_removals(&pass(), false).unwrap();
        if gone {
            assert!(owner.members().iter().all(|m| m.name != "goes"), "k={k}");
            assert!(!opens(b"backdoor", None) && !opens(b"kept code", Some("puppet")));
        }
        for who in [(&pass(), None), (&secret(b"stays"), Some("stays"))] {
            let v = Vault::open(
                real(),
                who.0,
                VaultOptions {
                    member: who.1.map(str::to_string),
                    ..options.clone()
                },
            )
            .unwrap();
            for i in 0..6u8 {
                assert_eq!(
                    v.get(&format!("s{i}")).unwrap().value.expose_secret(),
                    &[i; 300],
                    "k={k}"
                );
            }
            v.verify().unwrap();
        }
        if result.is_ok() && !faulty.fired() {
            break;
        }
        k += 1;
        assert!(k < 500, "the removal never completed");
    }
    // Some faults fell between the slot's marking and the end of the rotation.
    assert!(pending_seen > 0, "no interrupted rotation was seen");
}

/// A member a removed member added is named by the removal (it may be theirs: a puppet with a
/// passphrase they know), and stays a member until removed too.
#[test]
fn members_a_removed_member_added_are_named() {
    let d = TestDir::new();
    let owner = d.create();
    owner.become_member(&pass(), "owner").unwrap();
    owner
        .add_member(&pass(), "bob", &secret(b"bob"), cheap_kdf(), false)
        .unwrap();
    let bob = Vault::open(d.backend(), &secret(b"bob"), as_member(&d, "bob")).unwrap();
    bob.add_member(&secret(b"bob"), "zed", &secret(b"zed"), cheap_kdf(), false)
        .unwrap();
    // A handle's listing is of the header it read: a fresh one sees bob's change.
    let owner = Vault::open(d.backend(), &pass(), as_member(&d, "owner")).unwrap();
    let listed = owner.members();
    let zed = listed.iter().find(|m| m.name == "zed").unwrap();
    assert_eq!(zed.added_by.as_deref(), Some("bob"));
    assert_eq!(
        listed
            .iter()
            .find(|m| m.name == "bob")
            .unwrap()
            .added_by
            .as_deref(),
        Some("owner")
    );
    // zed adds yan, and bob removes zed: yan's adder is gone, and so is the trail to bob.
    let zed = Vault::open(d.backend(), &secret(b"zed"), as_member(&d, "zed")).unwrap();
    zed.add_member(&secret(b"zed"), "yan", &secret(b"yan"), cheap_kdf(), false)
        .unwrap();
    let bob = Vault::open(d.backend(), &secret(b"bob"), as_member(&d, "bob")).unwrap();
    assert_eq!(
        bob.remove_member(&secret(b"bob"), "zed", false)
            .unwrap()
            .unvouched,
        vec!["yan"]
    );
    // Removing bob names yan too, though bob did not add yan himself.
    let owner = Vault::open(d.backend(), &pass(), as_member(&d, "owner")).unwrap();
    owner
        .create_key(
            "payments",
            vault_store::KeySpec::new(vault_store::Algorithm::XChaCha20Poly1305),
        )
        .unwrap();
    // A version staged before the removal (its material readable by bob).
    owner
        .rotate_key(
            "payments",
            vault_store::RotateOptions {
                stage: true,
                keep_active: false,
            },
        )
        .unwrap();
    let removal = owner.remove_member(&pass(), "bob", false).unwrap();
    assert_eq!(removal.unvouched, vec!["yan"]);
    // Every managed key gets a new primary version: bob may hold the old material.
    assert_eq!(removal.rotated_keys, vec!["payments"]);
    let key = owner.key("payments").unwrap();
    assert_eq!(key.primary, 3);
    // The staged version is decrypt-only now, and cannot be promoted.
    assert_eq!(key.versions[1].state, vault_store::KeyState::Deactivated);
    assert!(owner.promote_key_version("payments", 2).is_err());
    let owner = Vault::open(d.backend(), &pass(), as_member(&d, "owner")).unwrap();
    let listed = owner.members();
    assert!(!listed.iter().find(|m| m.name == "yan").unwrap().vouched);
    assert!(listed.iter().find(|m| m.name == "owner").unwrap().vouched);
    // zed's name, still recorded as yan's adder, is not given to someone new (in any case).
    assert!(matches!(
        owner.add_member(&pass(), "ZED", &secret(b"new zed"), cheap_kdf(), false),
        Err(Error::Invalid { .. })
    ));
    // Still a member, as the removal said: removing yan too cuts that access.
    Vault::open(d.backend(), &secret(b"yan"), as_member(&d, "yan")).unwrap();
    owner.remove_member(&pass(), "yan", false).unwrap();
    assert!(Vault::open(d.backend(), &secret(b"yan"), d.options()).is_err());
    assert!(Vault::open(d.backend(), &secret(b"zed"), d.options()).is_err());
}

//! Property and negative tests for the vault-format codecs: every object round-trips, arbitrary
//! bytes never panic, and each kind of damage gets its own typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;
use proptest::prelude::*;
use vault_crypto::kdf::KdfParams;
use vault_crypto::wrap::WrappedKey;
use vault_crypto::{Key256, SecretBytes};
use vault_format::*;

fn arb_kdf() -> impl Strategy<Value = KdfParams> {
    (1u32..=64, 1u32..=1024).prop_flat_map(|(lanes, t)| {
        (8 * lanes..=KdfParams::MAX_MEMORY_KIB)
            .prop_map(move |m| KdfParams::for_key(m, t, lanes).unwrap())
    })
}

fn arb_slot(id: u16) -> impl Strategy<Value = KeySlot> {
    prop_oneof![
        4 => (
            arb_kdf(),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<u8>(), 72),
        )
            .prop_map(move |(kdf, salt, w)| KeySlot {
                id,
                body: SlotBody::Passphrase(PassphraseSlot {
                    kdf,
                    salt,
                    wrapped_key: WrappedKey::from_bytes(w.try_into().unwrap()),
                }),
            }),
        // Member names are unique within a header: one derived from the id.
        2 => (
            prop_oneof![Just(MemberState::Joined), Just(MemberState::Invited), Just(MemberState::Removed)],
            any::<[u8; 32]>(),
            arb_kdf(),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<u8>(), 72),
            proptest::collection::vec(any::<u8>(), 104),
        )
            .prop_map(move |(state, public_key, kdf, salt, w, b)| KeySlot {
                id,
                body: SlotBody::Member(MemberSlot {
                    name: format!("member.{id}"),
                    state,
                    added_by: if id.is_multiple_of(2) { String::new() } else { "someone".into() },
                    public_key,
                    kdf,
                    salt,
                    wrapped_private: WrappedKey::from_bytes(w.try_into().unwrap()),
                    boxed_master: b.try_into().unwrap(),
                }),
            }),
        // A kind this build does not know is kept byte for byte.
        1 => (3u8..=255, proptest::collection::vec(any::<u8>(), 1..200)).prop_map(
            move |(kind, body)| KeySlot {
                id,
                body: SlotBody::Unknown { kind, body },
            }
        ),
    ]
}

fn arb_header() -> impl Strategy<Value = VaultHeader> {
    (
        any::<[u8; 16]>(),
        any::<u32>(),
        proptest::sample::subsequence((0u16..=300).collect::<Vec<_>>(), 1..=12),
        any::<[u8; 32]>(),
    )
        .prop_flat_map(|(id, epoch, ids, mac)| {
            let slots: Vec<_> = ids.into_iter().map(arb_slot).collect();
            slots.prop_map(move |slots| VaultHeader {
                vault_id: VaultId::from_bytes(id),
                key_epoch: epoch,
                slots,
                mac,
            })
        })
}

proptest! {
    #[test]
    fn header_round_trips(h in arb_header()) {
        let bytes = h.encode();
        let slots_len: usize = h
            .slots
            .iter()
            .map(|s| match &s.body {
                SlotBody::Passphrase(_) => KEY_SLOT_LEN,
                SlotBody::Member(m) => SLOT_ENTRY_HEADER_LEN + 1 + m.name.len() + 1 + 1 + m.added_by.len() + 32 + 28 + 72 + 104,
                SlotBody::Unknown { body, .. } => SLOT_ENTRY_HEADER_LEN + body.len(),
            })
            .sum();
        prop_assert_eq!(bytes.len(), HEADER_FIXED_LEN + slots_len + 64);
        prop_assert_eq!(VaultHeader::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn envelope_round_trips(e in arb_envelope()) {
        let bytes = e.encode();
        prop_assert_eq!(bytes.len(), e.encoded_len());
        prop_assert_eq!(RecordEnvelope::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn sealed_envelope_opens_only_with_its_bindings(
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        seq in any::<u64>(),
    ) {
        let key = record_key();
        let env = RecordEnvelope::seal(&key, &vault_id(), RecordKind::SecretVersion, seq, &plaintext).unwrap();
        let opened = env.open(&key, &vault_id()).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
        let mut moved = env.clone();
        moved.sequence = seq.wrapping_add(1);
        let moved_result = moved.open(&key, &vault_id());
        prop_assert!(matches!(moved_result, Err(Error::Authentication { .. })), "moved record opened");
        let mut relabelled = env.clone();
        relabelled.kind = RecordKind::KeyVersion;
        prop_assert!(relabelled.open(&key, &vault_id()).is_err());
        prop_assert!(env.open(&key, &VaultId::from_bytes([9; 16])).is_err());
    }

    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = VaultHeader::decode(&bytes);
    }

    #[test]
    fn header_decode_of_mutated_valid_header_never_panics(
        idx in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let mut bytes = example_header().encode();
        let i = idx.index(bytes.len());
        bytes[i] = byte;
        let _ = VaultHeader::decode(&bytes);
    }

    #[test]
    fn envelope_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = RecordEnvelope::decode(&bytes);
    }
}

#[test]
fn every_flipped_bit_in_the_header_is_detected() {
    let good = example_header().encode();
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        match VaultHeader::decode(&bad) {
            // Flips inside the magic, tag, version or flags are caught by the preamble checks;
            // everything else by the checksum.
            Err(Error::ChecksumMismatch { .. })
            | Err(Error::BadMagic { .. })
            | Err(Error::WrongObject { .. })
            | Err(Error::UnsupportedVersion { .. })
            | Err(Error::InvalidField { .. }) => {}
            other => panic!("bit {i}: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_the_header_is_rejected() {
    let good = example_header().encode();
    for len in 0..good.len() {
        assert!(
            VaultHeader::decode(&good[..len]).is_err(),
            "length {len} accepted"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert!(VaultHeader::decode(&long).is_err());
}

#[test]
fn newer_header_version_is_refused_with_a_clear_message() {
    let mut bytes = example_header().encode();
    bytes[12] = 2;
    let err = VaultHeader::decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        Error::UnsupportedVersion {
            object: "vault header",
            found: 2,
            max: 1
        }
    );
    assert!(
        err.to_string()
            .contains("written by a newer version of vault"),
        "{err}"
    );
}

#[test]
fn not_a_vault_file() {
    assert!(matches!(
        VaultHeader::decode(b"hello world, this is text"),
        Err(Error::BadMagic { .. })
    ));
    assert!(matches!(
        VaultHeader::decode(b""),
        Err(Error::Truncated { field: "magic", .. })
    ));
    let mut crlf = example_header().encode();
    crlf.remove(4); // a CR stripped by a text-mode transfer
    assert!(matches!(
        VaultHeader::decode(&crlf),
        Err(Error::BadMagic { .. })
    ));
}

/// Re-encodes a header with a correct checksum so the structural checks behind it are reached.
fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 32;
    let sum = vault_crypto::hash::sha256(&[&bytes[..n]]);
    bytes[n..].copy_from_slice(&sum);
    bytes
}

#[test]
fn structural_errors_behind_a_valid_checksum_are_precise() {
    let good = example_header().encode();
    let mut zero_slots = good.clone();
    zero_slots[36] = 0;
    zero_slots[37] = 0;
    assert!(matches!(
        VaultHeader::decode(&with_checksum(zero_slots)),
        Err(Error::InvalidField {
            field: "slot count",
            ..
        })
    ));
    // More slots than the format allows.
    let mut nine = good.clone();
    nine[36..38].copy_from_slice(&(MAX_KEY_SLOTS as u16 + 1).to_le_bytes());
    assert!(matches!(
        VaultHeader::decode(&with_checksum(nine)),
        Err(Error::InvalidField { .. })
    ));
    let mut kind = good.clone();
    kind[42] = 0;
    assert!(matches!(
        VaultHeader::decode(&with_checksum(kind)),
        Err(Error::InvalidField {
            field: "slot kind",
            ..
        })
    ));
    // A passphrase slot must be exactly 100 bytes.
    let mut length = good.clone();
    length[44..46].copy_from_slice(&99u16.to_le_bytes());
    assert!(matches!(
        VaultHeader::decode(&with_checksum(length)),
        Err(Error::InvalidField {
            field: "slot body length",
            ..
        })
    ));
    let mut memory = good.clone();
    memory[46..50].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        VaultHeader::decode(&with_checksum(memory)),
        Err(Error::InvalidField {
            field: "kdf parameters",
            ..
        })
    ));
    let mut reserved = good.clone();
    reserved[38] = 1;
    assert!(matches!(
        VaultHeader::decode(&with_checksum(reserved)),
        Err(Error::InvalidField {
            field: "reserved",
            ..
        })
    ));
    let mut flags = good.clone();
    flags[14] = 1;
    assert!(matches!(
        VaultHeader::decode(&with_checksum(flags)),
        Err(Error::InvalidField { field: "flags", .. })
    ));
}

#[test]
fn forged_header_fields_fail_authentication() {
    // Someone who can recompute the checksum but has no key cannot change cleartext fields.
    let good = example_header().encode();
    let pass = SecretBytes::from_slice(PASSPHRASE);
    let mut epoch = good.clone();
    epoch[32] = 1;
    assert!(matches!(
        VaultHeader::decode(&with_checksum(epoch))
            .unwrap()
            .unlock(&pass),
        Err(Error::Authentication { .. })
    ));
    let mut mac = good.clone();
    mac[HEADER_FIXED_LEN + KEY_SLOT_LEN] ^= 1; // the first byte of the header MAC
    assert_eq!(
        VaultHeader::decode(&with_checksum(mac))
            .unwrap()
            .unlock(&pass)
            .unwrap_err(),
        Error::Authentication {
            object: "vault header"
        }
    );
    assert_eq!(
        VaultHeader::decode(&good)
            .unwrap()
            .unlock(&SecretBytes::from_slice(b"wrong"))
            .unwrap_err(),
        Error::Authentication { object: "key slot" }
    );
}

#[test]
fn header_with_several_slots_unlocks_with_each_passphrase() {
    let master = Key256::generate().unwrap();
    let id = VaultId::random().unwrap();
    let kdf = KdfParams::for_key(64, 1, 1).unwrap();
    let a = KeySlot::create(0, b"first", kdf, &master, &id, 3).unwrap();
    let b = KeySlot::create(1, b"second", kdf, &master, &id, 3).unwrap();
    let h = VaultHeader::new(id, 3, vec![a, b], &master).unwrap();
    let h = VaultHeader::decode(&h.encode()).unwrap();
    assert_eq!(h.unlock(&SecretBytes::from_slice(b"first")).unwrap().1, 0);
    assert_eq!(h.unlock(&SecretBytes::from_slice(b"second")).unwrap().1, 1);
    assert!(h.unlock(&SecretBytes::from_slice(b"third")).is_err());
    assert_eq!(h.free_slot_id(), Some(2));
    let dup = VaultHeader::new(id, 3, vec![h.slots[0].clone(), h.slots[0].clone()], &master);
    assert!(matches!(
        dup,
        Err(Error::InvalidField {
            field: "key slots",
            ..
        })
    ));
}

#[test]
fn envelope_negative_cases() {
    let good = example_envelope().encode();
    for len in 0..good.len() {
        assert!(
            RecordEnvelope::decode(&good[..len]).is_err(),
            "length {len} accepted"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        RecordEnvelope::decode(&trailing),
        Err(Error::TrailingBytes { count: 1, .. })
    ));
    let mut kind = good.clone();
    kind[0] = 99;
    assert!(matches!(
        RecordEnvelope::decode(&kind),
        Err(Error::InvalidField {
            field: "record kind",
            ..
        })
    ));
    let mut newer = good.clone();
    newer[1] = 2;
    assert!(matches!(
        RecordEnvelope::decode(&newer),
        Err(Error::UnsupportedVersion { found: 2, .. })
    ));
    let mut huge = good.clone();
    huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        RecordEnvelope::decode(&huge),
        Err(Error::TooLong {
            field: "ciphertext",
            ..
        })
    ));
    let mut short = good[..40].to_vec();
    short[36..40].copy_from_slice(&4u32.to_le_bytes());
    short.extend_from_slice(&[0; 4]);
    assert!(matches!(
        RecordEnvelope::decode(&short),
        Err(Error::InvalidField {
            field: "ciphertext",
            ..
        })
    ));
    // Every bit flip of a sealed envelope fails: at decode, or at authentication.
    let key = record_key();
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let opened = RecordEnvelope::decode(&bad).and_then(|e| e.open(&key, &vault_id()));
        assert!(opened.is_err(), "bit {i} flip accepted");
    }
}

#[test]
fn oversized_plaintext_is_refused_before_sealing() {
    let big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        RecordEnvelope::seal(
            &record_key(),
            &vault_id(),
            RecordKind::SecretVersion,
            1,
            &big
        ),
        Err(Error::TooLong { .. })
    ));
    let max = vec![0u8; MAX_PLAINTEXT_LEN];
    let env = RecordEnvelope::seal(
        &record_key(),
        &vault_id(),
        RecordKind::SecretVersion,
        1,
        &max,
    )
    .unwrap();
    assert_eq!(env.encoded_len(), MAX_ENVELOPE_LEN);
    assert_eq!(RecordEnvelope::decode(&env.encode()).unwrap(), env);
}

/// Found by the third hostile pass: a slot count larger than the entries present read the MAC as
/// a slot and reported "reserved bytes must be zero"; it is a truncated slot table.
#[test]
fn a_slot_count_beyond_the_entries_present_is_a_truncated_table() {
    let mut five = example_header().encode();
    five[36..38].copy_from_slice(&5u16.to_le_bytes());
    assert!(matches!(
        VaultHeader::decode(&with_checksum(five)),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn a_member_slot_opens_with_its_passphrase_and_survives_a_rewrap_to_a_new_master_key() {
    let master = Key256::generate().unwrap();
    let id = VaultId::random().unwrap();
    let kdf = KdfParams::for_key(64, 1, 1).unwrap();
    let owner = KeySlot::create(0, b"owner", kdf, &master, &id, 3).unwrap();
    let new = NewMember {
        name: "bob",
        state: MemberState::Joined,
        secret: b"bob's",
        kdf,
        added_by: "alice",
    };
    let bob = KeySlot::create_member(1, &new, &master, &id, 3).unwrap();
    let h = VaultHeader::new(id, 3, vec![owner, bob.clone()], &master).unwrap();
    let h = VaultHeader::decode(&h.encode()).unwrap();
    assert_eq!(h.slots[1].member(), Some(("bob", MemberState::Joined)));
    let (opened, slot) = h.unlock(&SecretBytes::from_slice(b"bob's")).unwrap();
    assert_eq!((opened, slot), (master.duplicate(), 1));

    // A new master key is wrapped to bob without his passphrase; the old wrap no longer
    // matches the new epoch, and the new one opens only the new key.
    let new_master = Key256::generate().unwrap();
    let mut moved = bob.clone();
    moved.rewrap_member(&new_master, &id, 4).unwrap();
    assert_eq!(
        moved.unlock(b"bob's", &id, 4).unwrap(),
        new_master.duplicate()
    );
    assert!(bob.unlock(b"bob's", &id, 4).is_err());
    assert!(moved.unlock(b"wrong", &id, 4).is_err());
    // The slot is bound to its id: moved to another id it opens nothing.
    let mut renumbered = moved.clone();
    renumbered.id = 7;
    assert!(renumbered.unlock(b"bob's", &id, 4).is_err());
    // A removed member's slot opens nothing, even with the right passphrase.
    let mut gone = moved.clone();
    gone.mark_member_removed().unwrap();
    assert_eq!(gone.member(), Some(("bob", MemberState::Removed)));
    assert!(gone.unlock(b"bob's", &id, 4).is_err());
    assert!(
        VaultHeader::decode(
            &VaultHeader::new(id, 4, vec![gone], &new_master)
                .unwrap()
                .encode()
        )
        .is_ok()
    );
    // Two slots for one member are refused.
    let mut twin = moved.clone();
    twin.id = 2;
    assert!(VaultHeader::new(id, 4, vec![moved, twin], &new_master).is_err());
}

#[test]
fn member_names_follow_the_rule() {
    for ok in ["bob", "alice.smith@example.com", "ops+1", "A_b-c"] {
        assert!(check_member_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-bob", "bob smith", "bob/x", "é", &"x".repeat(65)] {
        assert!(check_member_name(bad).is_err(), "{bad:?}");
    }
}

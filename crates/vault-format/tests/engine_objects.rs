//! Property and negative tests for the objects the engine writes: log frames, record payloads and
//! the rollback record. Every object round-trips; arbitrary bytes never panic; damage is typed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::arb_envelope;
use proptest::prelude::*;
use vault_crypto::{Key256, SecretBytes};
use vault_format::log::{Frame, FrameType, FrameView, decode_log_header, encode_log_header};
use vault_format::payload::*;
use vault_format::rollback::*;
use vault_format::*;

fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_.-]([a-zA-Z0-9/_. é-]{0,60}[a-zA-Z0-9])?"
}

fn arb_tag() -> impl Strategy<Value = Tag> {
    ("[a-z][a-z0-9_.-]{0,20}", "[ -~]{0,40}").prop_map(|(key, value)| Tag { key, value })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (
            arb_name(),
            1u32..,
            any::<i64>(),
            prop::collection::vec(arb_tag(), 0..5),
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(name, version, created_ms, tags, value)| {
                Payload::SecretVersion(SecretVersionPayload {
                    name,
                    version,
                    created_ms,
                    tags,
                    value: SecretBytes::new(value),
                })
            }),
        (
            arb_name(),
            prop::sample::select(vec![
                SecretState::Deleted,
                SecretState::Restored,
                SecretState::Destroyed
            ]),
            any::<i64>()
        )
            .prop_map(
                |(name, state, time_ms)| Payload::SecretState(SecretStatePayload {
                    name,
                    state,
                    time_ms
                })
            ),
        (
            arb_name(),
            1u32..,
            "[a-z0-9_-]{1,32}",
            prop::sample::select(KeyState::ALL.to_vec()),
            any::<i64>(),
            any::<i64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(
                |(name, version, algorithm, state, created_ms, state_changed_ms, m)| {
                    Payload::KeyVersion(KeyVersionPayload {
                        name,
                        version,
                        algorithm,
                        state,
                        created_ms,
                        state_changed_ms,
                        material: SecretBytes::new(m),
                    })
                }
            ),
        (1u32..=MAX_MAX_VERSIONS)
            .prop_map(|max_versions| Payload::Settings(SettingsPayload { max_versions })),
        (
            prop::sample::select(EventKind::ALL.to_vec()),
            any::<i64>(),
            "[ -~]{0,80}"
        )
            .prop_map(|(kind, time_ms, text)| Payload::Event(EventPayload {
                kind,
                time_ms,
                text
            })),
        (
            prop::sample::select(vec![BindingPhase::Intent, BindingPhase::Confirmed]),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(phase, digest)| Payload::HeaderBinding(HeaderBindingPayload { phase, digest })
            ),
        (
            (
                arb_name(),
                any::<[u8; 8]>(),
                "[a-z0-9_-]{1,32}",
                prop::collection::btree_map(
                    1u32..,
                    (prop::sample::select(KeyState::ALL.to_vec()), any::<i64>()),
                    1..6
                ),
                any::<prop::sample::Index>()
            ),
            (any::<u32>(), any::<u32>(), any::<Option<i64>>()),
            (
                prop::option::of(1u64..=i64::MAX as u64),
                0u16..128,
                any::<i64>(),
                any::<i64>()
            )
        )
            .prop_map(
                |(
                    (name, key_id, algorithm, versions, pick),
                    (min_decrypt_version, min_encrypt_version, expires_ms),
                    (rotate_every_ms, bits, created_ms, changed_ms),
                )| {
                    let versions: Vec<_> = versions
                        .into_iter()
                        .map(
                            |(version, (state, changed_ms))| vault_format::keys::VersionState {
                                version,
                                state,
                                changed_ms,
                            },
                        )
                        .collect();
                    let primary = pick.get(&versions).version;
                    Payload::Key(KeyPayload {
                        versions,
                        name,
                        key_id,
                        algorithm,
                        primary,
                        min_decrypt_version,
                        min_encrypt_version,
                        expires_ms,
                        rotate_every_ms,
                        allowed: vault_format::keys::KeyOps::from_bits(bits).unwrap(),
                        created_ms,
                        changed_ms,
                    })
                }
            ),
    ]
}

proptest! {
    /// What an interrupted append can leave after a good frame — any strict prefix of a frame,
    /// or the whole frame with one of its pages zeroed — is a torn tail; a complete frame with
    /// any byte of its body changed (and no zero page) is damage.
    #[test]
    fn torn_tails_and_damage_are_told_apart(
        body in prop::collection::vec(1u8..=255, 48..9000),
        at in 24u64..20_000,
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        page in any::<prop::sample::Index>(),
    ) {
        use vault_format::log::{Tail, classify_tail, PAGE_LEN};
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        prop_assert_eq!(classify_tail(&frame, at), Tail::Damaged);
        let n = cut.index(frame.len());
        prop_assert_eq!(classify_tail(&frame[..n], at), if n == 0 { Tail::Clean } else { Tail::Torn });
        let mut flipped = frame.clone();
        let i = 4 + flip.index(body.len());
        flipped[i] ^= 0x80;
        if flipped[i] != 0 {
            prop_assert_eq!(classify_tail(&flipped, at), Tail::Damaged);
        }
        // Zero one page of the file (cut to the frame).
        let first_page = at / PAGE_LEN;
        let last_page = (at + frame.len() as u64 - 1) / PAGE_LEN;
        let p = first_page + page.index((last_page - first_page + 1) as usize) as u64;
        let (from, to) = ((p * PAGE_LEN).max(at), ((p + 1) * PAGE_LEN).min(at + frame.len() as u64));
        let mut zeroed = frame.clone();
        for b in &mut zeroed[(from - at) as usize..(to - at) as usize] {
            *b = 0;
        }
        prop_assert_eq!(classify_tail(&zeroed, at), Tail::Torn);
    }

    #[test]
    fn payloads_round_trip(p in arb_payload()) {
        let bytes = p.encode().unwrap();
        let back = Payload::decode(p.kind(), &bytes).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn payload_decode_never_panics(kind in prop::sample::select(RecordKind::ALL.to_vec()), bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Payload::decode(kind, &bytes);
    }

    #[test]
    fn frames_round_trip_and_authenticate(
        records in prop::collection::vec(arb_envelope(), 0..6),
        generation in 1u64..,
        epoch in any::<u32>(),
        prev in any::<[u8; 32]>(),
        snapshot in any::<bool>(),
    ) {
        let key = vault_crypto::derive::ChainMacKey::from_key(Key256::from_slice(&[9; 32]).unwrap());
        let id = VaultId::from_bytes([3; 16]);
        let t = if snapshot { FrameType::Snapshot } else { FrameType::Commit };
        let f = Frame::seal(&key, &id, epoch, &prev, t, generation, records);
        let body = f.encode().unwrap();
        let back = Frame::decode(&body).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert!(back.verify(&body, &key, &id, epoch, &prev).is_ok());
        // Bound to its epoch and, for commits, to the previous frame's MAC.
        prop_assert!(back.verify(&body, &key, &id, epoch.wrapping_add(1), &prev).is_err());
        if !snapshot {
            let mut other = prev;
            other[0] ^= 1;
            prop_assert!(back.verify(&body, &key, &id, epoch, &other).is_err());
        }
    }

    #[test]
    fn frame_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Frame::decode(&bytes);
        let _ = decode_log_header(&bytes);
        let _ = view(&bytes);
    }

    /// A frame read in place gives each record at the offset it was encoded at, and accepts
    /// what a whole decode accepts (a whole decode is built on it): on encoded frames, on frames
    /// with a byte changed or the end cut, and on arbitrary bytes.
    #[test]
    fn a_frame_view_agrees_with_a_whole_decode(
        records in prop::collection::vec(arb_envelope(), 0..6),
        generation in 1u64..,
        flip in any::<Option<(usize, u8)>>(),
        cut in any::<Option<usize>>(),
        noise in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let key = vault_crypto::derive::ChainMacKey::from_key(Key256::from_slice(&[9; 32]).unwrap());
        let id = VaultId::from_bytes([3; 16]);
        let f = Frame::seal(&key, &id, 7, &[1; 32], FrameType::Commit, generation, records);
        let body = f.encode().unwrap();
        let (ty, generation, mac, recs) = view(&body).unwrap();
        prop_assert_eq!((ty, generation, mac), (f.frame_type, f.generation, f.mac));
        let mut start = 16;
        for ((at, env), expected) in recs.iter().zip(&f.records) {
            prop_assert_eq!(*at, start);
            prop_assert_eq!(env, expected);
            prop_assert_eq!(&RecordEnvelope::decode(&body[start..start + env.encoded_len()]).unwrap(), expected);
            start += env.encoded_len();
        }
        prop_assert_eq!(recs.len(), f.records.len());
        prop_assert!(FrameView::parse(&body).unwrap().verify(&key, &id, 7, &[1; 32]).is_ok());
        let mut changed = body.clone();
        if let Some((i, x)) = flip {
            let i = i % changed.len();
            changed[i] ^= x.max(1);
        }
        if let Some(n) = cut {
            changed.truncate(n % (changed.len() + 1));
        }
        for bytes in [&changed, &noise] {
            let whole = Frame::decode(bytes);
            let viewed = view(bytes);
            prop_assert_eq!(whole.is_ok(), viewed.is_ok());
            if let (Ok(w), Ok((_, _, _, recs))) = (whole, viewed) {
                prop_assert_eq!(w.records, recs.into_iter().map(|(_, e)| e).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn rollback_records_round_trip(counter in any::<u64>(), epoch in any::<u32>(), generation in any::<u64>(), id in any::<[u8; 16]>()) {
        let key = vault_crypto::derive::RollbackKey::from_key(Key256::from_slice(&[5; 32]).unwrap());
        let id = VaultId::from_bytes(id);
        let s = RollbackSlot::seal(&key, &id, counter, epoch, generation);
        let bytes = encode_rollback_file(&id, [&s, &s]);
        prop_assert_eq!(bytes.len(), ROLLBACK_FILE_LEN);
        let (back_id, [a, b]) = decode_rollback_file(&bytes).unwrap();
        prop_assert_eq!(back_id, id);
        let a = a.unwrap();
        prop_assert!(a.verify(&key, &id));
        prop_assert_eq!(&a, &b.unwrap());
        let other = VaultId::from_bytes([0xEE; 16]);
        prop_assert!(other == id || !a.verify(&key, &other));
    }

    #[test]
    fn rollback_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_rollback_file(&bytes);
    }
}

#[test]
fn log_header_round_trips_and_refuses_newer_versions() {
    let h = encode_log_header(7);
    assert_eq!(h.len(), log::LOG_HEADER_LEN);
    assert_eq!(decode_log_header(&h).unwrap(), 7);
    let mut newer = h.clone();
    newer[12] = 2;
    assert!(matches!(
        decode_log_header(&newer),
        Err(Error::UnsupportedVersion {
            found: 2,
            max: 1,
            ..
        })
    ));
    let mut wrong = h.clone();
    wrong[8..12].copy_from_slice(b"VHDR");
    assert!(matches!(
        decode_log_header(&wrong),
        Err(Error::WrongObject { .. })
    ));
}

#[test]
fn payload_limits_are_enforced_both_ways() {
    let too_long_name = Payload::SecretState(SecretStatePayload {
        name: "n".repeat(MAX_NAME_LEN + 1),
        state: SecretState::Deleted,
        time_ms: 0,
    });
    assert!(too_long_name.encode().is_err());
    let newer = [PAYLOAD_VERSION + 1, 0, 0];
    assert!(matches!(
        Payload::decode(RecordKind::Settings, &newer),
        Err(Error::UnsupportedVersion { .. })
    ));
    // A value length over the limit is refused before anything is allocated.
    let mut sv = vec![1u8];
    sv.extend_from_slice(&1u16.to_le_bytes());
    sv.push(b'n');
    sv.extend_from_slice(&1u32.to_le_bytes());
    sv.extend_from_slice(&0i64.to_le_bytes());
    sv.extend_from_slice(&0u16.to_le_bytes());
    sv.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Payload::decode(RecordKind::SecretVersion, &sv),
        Err(Error::TooLong { .. })
    ));
    // A record count that cannot fit the frame is refused before allocation.
    let mut f = vec![1u8, 0, 0, 0];
    f.extend_from_slice(&1u64.to_le_bytes());
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    f.extend_from_slice(&[0; 32]);
    assert!(matches!(
        Frame::decode(&f),
        Err(Error::InvalidField {
            field: "record count",
            ..
        })
    ));
}

/// A frame's type, generation, MAC and records with their offsets.
type Viewed = (FrameType, u64, [u8; 32], Vec<(usize, RecordEnvelope)>);

/// A frame read through [`FrameView`]: its fixed part, MAC and every record with its offset, or
/// the first error.
fn view(body: &[u8]) -> vault_format::Result<Viewed> {
    let v = FrameView::parse(body)?;
    let records = v.records().collect::<vault_format::Result<Vec<_>>>()?;
    Ok((v.frame_type, v.generation, v.mac, records))
}

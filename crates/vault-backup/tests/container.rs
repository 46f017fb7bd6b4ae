//! The backup container: payloads of every size at and around chunk boundaries round-trip;
//! every kind of damage (a flipped bit anywhere, truncation at and inside chunk boundaries,
//! chunks swapped, duplicated, dropped or taken from another backup, a changed header, a wrong
//! passphrase, a greedy KDF) is refused before the end of the read, naming what is wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::{Read, Write};

use proptest::prelude::*;
use vault_backup::{Error, Limits, container::Sealer, create, open};
use vault_crypto::kdf::KdfParams;
use vault_format::backup::{BackupHeader, CHUNK_SIZE};

fn cursor(vault_id: [u8; 16], generation: u64) -> vault_store::SnapshotCursor {
    vault_store::SnapshotCursor {
        vault_id,
        key_epoch: 1,
        generation,
        sequence: generation,
        lineage: [0; 16],
    }
}

const PASS: &[u8] = b"backup passphrase";
const C: usize = CHUNK_SIZE as usize;

fn kdf() -> KdfParams {
    KdfParams::for_key(64, 1, 1).unwrap()
}

fn seal(payload: &[u8]) -> Vec<u8> {
    let (header, keys) = create(PASS, kdf(), &cursor([7; 16], 3), None, "test").unwrap();
    let mut w = Sealer::new(Vec::new(), &header, &keys).unwrap();
    // Written in uneven pieces, as a compressor would.
    for piece in payload.chunks(7919) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn read(file: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = open(file, PASS, &Limits::default())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn header_len(file: &[u8]) -> usize {
    BackupHeader::len_from_prefix(file).unwrap()
}

#[test]
fn payloads_round_trip_at_and_around_chunk_boundaries() {
    for len in [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 17] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let file = seal(&payload);
        assert_eq!(read(&file).unwrap(), payload, "length {len}");
    }
}

#[test]
fn truncation_at_and_inside_every_chunk_is_refused() {
    let payload = vec![0x5Au8; 3 * C + 100];
    let file = seal(&payload);
    let h = header_len(&file);
    let sealed = C + 16;
    let mut cuts: Vec<usize> = (0..=3).map(|i| h + i * sealed).collect();
    cuts.extend((0..=3).map(|i| h + i * sealed + 100));
    cuts.extend([file.len() - 1, file.len() - 32, file.len() - 33, 10, h - 1]);
    for cut in cuts {
        let r = read(&file[..cut]);
        assert!(r.is_err(), "cut at {cut} of {} was accepted", file.len());
    }
    // Extended by a byte, or a whole chunk's worth.
    let mut longer = file.clone();
    longer.push(0);
    assert!(read(&longer).is_err());
}

#[test]
fn swapped_duplicated_dropped_and_foreign_chunks_are_refused() {
    let payload: Vec<u8> = (0..3 * C + 5).map(|i| i as u8).collect();
    let file = seal(&payload);
    let h = header_len(&file);
    let s = C + 16;
    let chunk = |f: &[u8], i: usize| f[h + i * s..h + (i + 1) * s].to_vec();
    let rebuild = |order: &[Vec<u8>]| {
        let mut f = file[..h].to_vec();
        for c in order {
            f.extend_from_slice(c);
        }
        f.extend_from_slice(&file[h + 3 * s..]);
        f
    };
    let (a, b, c) = (chunk(&file, 0), chunk(&file, 1), chunk(&file, 2));
    for (what, f) in [
        ("swapped", rebuild(&[b.clone(), a.clone(), c.clone()])),
        ("duplicated", rebuild(&[a.clone(), a.clone(), c.clone()])),
        ("dropped", rebuild(&[a.clone(), c.clone()])),
    ] {
        let e = read(&f).unwrap_err();
        assert!(e.to_string().contains("chunk"), "{what}: {e}");
    }
    // A chunk from another backup of the same payload (same passphrase, other keys).
    let other = seal(&payload);
    let foreign = chunk(&other, 1);
    assert!(read(&rebuild(&[a, foreign, c])).is_err());
}

#[test]
fn a_wrong_passphrase_a_greedy_kdf_and_a_changed_header_are_told_apart() {
    let file = seal(b"payload");
    assert!(matches!(
        open(&file[..], b"wrong", &Limits::default()),
        Err(Error::WrongPassphrase)
    ));
    let tight = Limits {
        max_memory_kib: 32,
        max_cost: 32,
    };
    assert!(matches!(
        open(&file[..], PASS, &tight),
        Err(Error::KdfLimit(_))
    ));
    // The comment is not used for the keys: changing it is caught by the chunks (their
    // associated data is the header) and the trailer.
    let h = header_len(&file);
    let mut changed = file.clone();
    changed[h - 1] ^= 1;
    assert!(read(&changed).is_err());
    // A changed generation, likewise.
    let mut generation = file.clone();
    generation[16 + 2 + 16 + 16 + 8] ^= 1;
    assert!(read(&generation).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any single flipped bit anywhere in the file is refused.
    #[test]
    fn any_flipped_bit_is_refused(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let payload: Vec<u8> = (0..C + 300).map(|i| (i % 97) as u8).collect();
        let file = seal(&payload);
        let mut bad = file.clone();
        let i = at.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(read(&bad).is_err(), "bit {} of byte {} of {}", bit, i, file.len());
    }
}

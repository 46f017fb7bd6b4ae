//! The audit chain: random entries round-trip through their codec and make a chain that
//! verifies; any single edit, deletion, insertion, swap, replacement or truncation of the stored
//! frames makes the check fail at the entry it concerns (a cut at a frame boundary, through the
//! anchor kept outside the file). The same for the keyless chain of pending entries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use proptest::prelude::*;
use vault_crypto::Key256;
use vault_format::VaultId;
use vault_format::audit::{
    AuditEntry, AuditKeys, AuditOp, FILE_HEADER_LEN, FileHeader, LINK_LEN, Target, check_file,
    frame, frames, last_frame, pending_link,
};

fn vault() -> VaultId {
    VaultId::from_bytes([9; 16])
}

fn keys(seed: u8) -> AuditKeys {
    AuditKeys::derive(&Key256::from_slice(&[seed; 32]).unwrap(), &vault())
}

fn entry_strategy() -> impl Strategy<Value = AuditEntry> {
    (
        any::<i64>(),
        prop::sample::select(AuditOp::ALL.to_vec()),
        any::<u8>(),
        any::<bool>(),
        any::<u64>(),
        any::<(u32, u32)>(),
        "[a-z0-9.-]{0,40}",
        prop_oneof![
            Just(Target::None),
            any::<[u8; 32]>().prop_map(Target::Hashed),
            (
                any::<[u8; 24]>(),
                prop::collection::vec(any::<u8>(), 16..80)
            )
                .prop_map(|(nonce, sealed)| Target::Sealed { nonce, sealed }),
        ],
        "\\PC{0,30}",
    )
        .prop_map(
            |(time_ms, op, outcome, early, generation, (pid, uid), host, target, detail)| {
                AuditEntry {
                    index: 0,
                    time_ms,
                    op,
                    outcome,
                    flags: u8::from(early),
                    generation,
                    pid,
                    uid,
                    host,
                    target,
                    detail,
                }
            },
        )
}

/// A built file: its bytes, each frame's byte range, and the anchor (last index and link).
type Built = (Vec<u8>, Vec<std::ops::Range<usize>>, (u64, [u8; LINK_LEN]));

/// A file of `entries` (indexes set from 1) chained under `keys` (or, without, as pending
/// entries); returns its bytes, each frame's byte range, and the last index and link.
fn build(entries: &[AuditEntry], keys: Option<&AuditKeys>) -> Built {
    let header = FileHeader {
        pending: keys.is_none(),
        vault_id: vault(),
        first_index: 1,
        previous: [0; LINK_LEN],
    };
    let mut out = header.encode();
    assert_eq!(out.len(), FILE_HEADER_LEN);
    let mut ranges = Vec::new();
    let mut previous = [0u8; LINK_LEN];
    for (i, e) in entries.iter().enumerate() {
        let mut e = e.clone();
        e.index = i as u64 + 1;
        let bytes = e.encode().unwrap();
        let link = match keys {
            Some(k) => k.link(&previous, &bytes),
            None => pending_link(&vault(), &previous, &bytes),
        };
        let f = frame(&bytes, &link).unwrap();
        ranges.push(out.len()..out.len() + f.len());
        out.extend_from_slice(&f);
        previous = link;
    }
    (out, ranges, (entries.len() as u64, previous))
}

/// The index of the first entry the check finds a problem with, or `None`.
fn first_problem(
    bytes: &[u8],
    keys: Option<&AuditKeys>,
    anchor: (u64, [u8; LINK_LEN]),
) -> Option<u64> {
    let c = check_file(bytes, keys.is_none(), &vault(), keys, Some(anchor)).unwrap();
    c.problem.map(|(i, _)| i)
}

#[derive(Clone, Debug)]
enum Tamper {
    /// Flip a bit of an entry's bytes (not its lengths).
    Edit(usize, usize, u8),
    /// Flip a bit of a frame's stored link.
    Link(usize, usize, u8),
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Cut the file at a frame boundary: the last k frames gone.
    DropTail(usize),
    /// Cut inside a frame.
    CutInside(usize, usize),
    /// Put a frame of another chain (another key) in place of one.
    Foreign(usize),
}

fn tamper_strategy() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(a, b, c)| Tamper::Edit(a, b, c)),
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(a, b, c)| Tamper::Link(a, b, c)),
        any::<usize>().prop_map(Tamper::Delete),
        any::<usize>().prop_map(Tamper::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        any::<usize>().prop_map(Tamper::DropTail),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::CutInside(a, b)),
        any::<usize>().prop_map(Tamper::Foreign),
    ]
}

/// Applies `t` to the file; returns the tampered bytes and the index the check must name.
fn apply(
    t: &Tamper,
    bytes: &[u8],
    ranges: &[std::ops::Range<usize>],
    foreign: &[u8],
    foreign_ranges: &[std::ops::Range<usize>],
) -> Option<(Vec<u8>, u64)> {
    let n = ranges.len();
    let frame_bytes = |i: usize| bytes[ranges[i].clone()].to_vec();
    let rebuild = |order: &[Vec<u8>]| {
        let mut out = bytes[..FILE_HEADER_LEN].to_vec();
        for f in order {
            out.extend_from_slice(f);
        }
        out
    };
    let all: Vec<Vec<u8>> = (0..n).map(frame_bytes).collect();
    match *t {
        Tamper::Edit(i, at, bit) => {
            let i = i % n;
            let r = &ranges[i];
            let body = r.len() - 4 - LINK_LEN - 4;
            let mut out = bytes.to_vec();
            out[r.start + 4 + at % body] ^= 1 << bit;
            Some((out, i as u64 + 1))
        }
        Tamper::Link(i, at, bit) => {
            let i = i % n;
            let r = &ranges[i];
            let mut out = bytes.to_vec();
            out[r.end - 4 - LINK_LEN + at % LINK_LEN] ^= 1 << bit;
            Some((out, i as u64 + 1))
        }
        Tamper::Delete(i) => {
            let i = i % n;
            let mut order = all.clone();
            order.remove(i);
            Some((rebuild(&order), i as u64 + 1))
        }
        Tamper::Duplicate(i) => {
            let i = i % n;
            let mut order = all.clone();
            order.insert(i + 1, all[i].clone());
            Some((rebuild(&order), i as u64 + 2))
        }
        Tamper::Swap(a, b) => {
            let (a, b) = (a % n, b % n);
            if a == b {
                return None;
            }
            let mut order = all.clone();
            order.swap(a, b);
            Some((rebuild(&order), a.min(b) as u64 + 1))
        }
        Tamper::DropTail(k) => {
            let k = k % n + 1;
            Some((rebuild(&all[..n - k]), (n - k) as u64 + 1))
        }
        Tamper::CutInside(i, at) => {
            let i = i % n;
            let r = &ranges[i];
            let cut = r.start + 1 + at % (r.len() - 1);
            Some((bytes[..cut].to_vec(), i as u64 + 1))
        }
        Tamper::Foreign(i) => {
            let i = i % n.min(foreign_ranges.len());
            let mut order = all.clone();
            order[i] = foreign[foreign_ranges[i].clone()].to_vec();
            Some((rebuild(&order), i as u64 + 1))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn entries_round_trip(e in entry_strategy()) {
        let bytes = e.encode().unwrap();
        prop_assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn a_chain_verifies_and_any_single_tampering_is_found_where_it_is(
        entries in prop::collection::vec(entry_strategy(), 1..20),
        pending in any::<bool>(),
        t in tamper_strategy(),
    ) {
        let k = keys(1);
        let other = keys(2);
        let keys = (!pending).then_some(&k);
        let (bytes, ranges, anchor) = build(&entries, keys);
        prop_assert_eq!(first_problem(&bytes, keys, anchor), None);
        // The last frame, found from the end.
        let last = last_frame(&bytes[FILE_HEADER_LEN..]).unwrap();
        prop_assert_eq!(last.link, anchor.1);
        // A chain of the same entries under another key (or, for a pending file, with a
        // different first entry) to take frames from.
        let mut varied = entries.clone();
        varied[0].generation ^= 1;
        let (foreign, foreign_ranges, _) = build(&varied, if pending { None } else { Some(&other) });
        if let Some((bad, mut at)) = apply(&t, &bytes, &ranges, &foreign, &foreign_ranges) {
            // Without a key anyone can link a changed entry to the one before it: a pending
            // chain finds the change at the entry after it (or, for the last, by the anchor).
            // (Only the first foreign entry differs from ours; the others differ in link.)
            if pending && matches!(t, Tamper::Foreign(i) if i % entries.len() == 0) {
                at = (at + 1).min(entries.len() as u64);
            }
            prop_assert_eq!(first_problem(&bad, keys, anchor), Some(at), "{:?}", t);
        }
    }
}

#[test]
fn frames_read_back_in_order_and_a_torn_append_is_told_from_damage() {
    let k = keys(1);
    let entries: Vec<AuditEntry> = (0..3)
        .map(|_| AuditEntry {
            index: 0,
            time_ms: 1,
            op: AuditOp::Unlock,
            outcome: 0,
            flags: 0,
            generation: 1,
            pid: 1,
            uid: 0,
            host: "h".into(),
            target: Target::None,
            detail: String::new(),
        })
        .collect();
    let (bytes, ranges, _) = build(&entries, Some(&k));
    let body = &bytes[FILE_HEADER_LEN..];
    let (fs, tail) = frames(body);
    assert_eq!(fs.len(), 3);
    assert_eq!(tail, vault_format::audit::Tail::Clean);
    let cut = &body[..ranges[2].start - FILE_HEADER_LEN + 10];
    assert_eq!(
        frames(cut).1,
        vault_format::audit::Tail::Torn(ranges[2].start - FILE_HEADER_LEN)
    );
    let mut damaged = body.to_vec();
    let trailer = ranges[1].end - FILE_HEADER_LEN - 1;
    damaged[trailer] ^= 0xff;
    assert_eq!(
        frames(&damaged).1,
        vault_format::audit::Tail::Damaged(ranges[1].start - FILE_HEADER_LEN)
    );
    // Another vault's file is refused as such.
    let c = check_file(&bytes, false, &VaultId::from_bytes([1; 16]), Some(&k), None);
    assert!(c.is_err());
}

proptest! {
    /// A policy and a retention note read back exactly what was written, and nothing else
    /// reads as one; a sealed name opens to its kind and name under its key only.
    #[test]
    fn policies_notes_and_sealed_names_round_trip(
        names_clear in any::<bool>(),
        max_bytes in prop_oneof![Just(0u64), (1u64 << 20)..u64::MAX],
        max_age_days in any::<u32>(),
        first_kept in any::<u64>(),
        link in any::<[u8; 32]>(),
        files in any::<u32>(),
        name in "[a-z/_.-]{1,40}",
        kind in 1u8..=2,
        junk in ".{0,60}",
    ) {
        use vault_format::audit::{AuditPolicy, RetentionNote};
        let p = AuditPolicy { names_clear, max_bytes, max_age_days };
        prop_assert_eq!(AuditPolicy::from_detail(&p.to_detail()).unwrap(), p);
        let n = RetentionNote { first_kept, link, files };
        prop_assert_eq!(RetentionNote::from_detail(&n.to_detail()).unwrap(), n);
        // Arbitrary text reads as neither unless it is exactly what they write.
        if let Ok(p) = AuditPolicy::from_detail(&junk) {
            prop_assert_eq!(p.to_detail(), junk.clone());
        }
        if let Ok(n) = RetentionNote::from_detail(&junk) {
            prop_assert_eq!(n.to_detail(), junk);
        }
        // A size limit under 1 MiB is refused.
        let small = AuditPolicy { max_bytes: (1 << 20) - 1, ..p };
        prop_assert!(AuditPolicy::from_detail(&small.to_detail()).is_err());
        let sealed = keys(1).seal_name(kind, &name).unwrap();
        prop_assert_eq!(keys(1).open_name(&sealed), Some((kind, name.clone())));
        prop_assert!(keys(1).names(&sealed, kind, &name));
        prop_assert!(!keys(1).names(&sealed, 3 - kind, &name));
        prop_assert_eq!(keys(2).open_name(&sealed), None);
        let Target::Sealed { nonce, mut sealed } = sealed else { panic!("not sealed") };
        sealed[0] ^= 1;
        prop_assert_eq!(keys(1).open_name(&Target::Sealed { nonce, sealed }), None);
        prop_assert!(keys(1).names(&Target::Hashed(keys(1).name_hash(kind, &name)), kind, &name));
        // A handover of epoch 1's name keys under epoch 2's opens with epoch 2's alone, and
        // gives keys that match what epoch 1 wrote.
        let handover = keys(2).seal_handover(keys(1).name_keys()).unwrap();
        let old = keys(2).name_keys().open_handover(&handover).unwrap();
        prop_assert!(old.names(&Target::Hashed(keys(1).name_hash(kind, &name)), kind, &name));
        prop_assert_eq!(old.open_name(&keys(1).seal_name(kind, &name).unwrap()), Some((kind, name.clone())));
        prop_assert!(keys(1).name_keys().open_handover(&handover).is_none());
        prop_assert!(keys(2).name_keys().open_handover(&keys(2).seal_name(kind, &name).unwrap()).is_none());
    }
}

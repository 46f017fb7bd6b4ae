//! Managed keys: the lifecycle against a model (a proptest state machine on both backends), the
//! issue's acceptance scenario, each refusal's typed error, tokens, streams, signatures, and
//! destroyed material leaving the vault's files.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use proptest::prelude::*;
use vault_format::token;
use vault_store::{
    Algorithm, Backend, Clock, Error, FileBackend, KeyError, KeyOps, KeySpec, KeyState,
    MemoryBackend, RotateOptions, UseOptions, Vault, VaultOptions,
};

const DAY: i64 = 86_400_000;

fn key_err(r: Result<impl std::fmt::Debug, Error>) -> KeyError {
    match r {
        Err(Error::Key(e)) => e,
        other => panic!("expected a key error, got {other:?}"),
    }
}

fn memory_vault() -> Vault {
    Vault::create(
        Arc::new(MemoryBackend::new()),
        &pass(),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_version_1_ciphertext_outlives_three_rotations_and_follows_its_version_state() {
    let v = memory_vault();
    v.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let t1 = v.encrypt("k", b"the plaintext", b"ad").unwrap();
    assert!(token::to_text(&t1).unwrap().starts_with("vault:v1:"));
    for n in 2..=4 {
        assert_eq!(v.rotate_key("k", RotateOptions::default()).unwrap(), n);
    }
    let info = v.key("k").unwrap();
    assert_eq!(info.primary, 4);
    assert_eq!(info.version(1).unwrap().state, KeyState::Deactivated);
    let dec = |t: &[u8]| v.decrypt("k", t, b"ad", UseOptions::default());
    assert_eq!(dec(&t1).unwrap().expose_secret(), b"the plaintext");

    v.set_key_version_state("k", 1, KeyState::Disabled).unwrap();
    assert!(matches!(
        key_err(dec(&t1)),
        KeyError::Disabled { version: 1, .. }
    ));
    v.set_key_version_state("k", 1, KeyState::Deactivated)
        .unwrap();
    assert_eq!(dec(&t1).unwrap().expose_secret(), b"the plaintext");

    v.set_key_floors("k", Some(2), None).unwrap();
    assert!(matches!(
        key_err(dec(&t1)),
        KeyError::BelowFloor {
            version: 1,
            floor: 2,
            ..
        }
    ));
    v.set_key_floors("k", Some(0), None).unwrap();
    let moved = v.rewrap("k", &t1, b"ad", UseOptions::default()).unwrap();
    assert!(token::to_text(&moved).unwrap().starts_with("vault:v4:"));
    assert_eq!(dec(&moved).unwrap().expose_secret(), b"the plaintext");
    // Wrong associated data, another key's token, a changed byte: each its own error.
    assert!(matches!(
        key_err(v.decrypt("k", &t1, b"other", UseOptions::default())),
        KeyError::Decrypt { version: 1, .. }
    ));
    v.create_key("other", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    assert!(matches!(
        key_err(v.decrypt("other", &t1, b"ad", UseOptions::default())),
        KeyError::WrongKey { .. }
    ));
    let mut changed = t1.clone();
    *changed.last_mut().unwrap() ^= 1;
    assert!(matches!(key_err(dec(&changed)), KeyError::Decrypt { .. }));
    assert!(matches!(key_err(dec(&t1[..10])), KeyError::BadToken { .. }));
}

#[test]
fn every_refusal_is_its_own_typed_error() {
    let now = Arc::new(AtomicI64::new(1_000 * DAY));
    let clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let v = Vault::create(
        Arc::new(MemoryBackend::new()),
        &pass(),
        cheap_kdf(),
        VaultOptions {
            clock,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let mut spec = KeySpec::new(Algorithm::XChaCha20Poly1305);
    spec.allowed = Some(KeyOps::ENCRYPT.with(KeyOps::DECRYPT));
    spec.expires_ms = Some(1_010 * DAY);
    v.create_key("k", spec).unwrap();
    let t = v.encrypt("k", b"x", b"").unwrap();
    assert!(matches!(
        key_err(v.create_key("k", KeySpec::new(Algorithm::Ed25519))),
        KeyError::Exists { .. }
    ));
    assert!(matches!(
        key_err(v.datakey("k", b"")),
        KeyError::Forbidden { op: "datakey", .. }
    ));
    assert!(matches!(
        key_err(v.sign("k", b"m")),
        KeyError::NotCapable { op: "sign", .. }
    ));
    assert!(matches!(
        key_err(v.set_key_policy("k", KeyOps::ENCRYPT.with(KeyOps::DATAKEY), false)),
        KeyError::Loosen { .. }
    ));
    v.set_key_policy(
        "k",
        KeyOps::ENCRYPT.with(KeyOps::DECRYPT).with(KeyOps::DATAKEY),
        true,
    )
    .unwrap();
    v.datakey("k", b"").unwrap();
    // Tightening needs nothing more.
    v.set_key_policy("k", KeyOps::ENCRYPT.with(KeyOps::DECRYPT), false)
        .unwrap();

    v.set_key_version_state("k", 1, KeyState::Compromised)
        .unwrap();
    assert!(matches!(
        key_err(v.decrypt("k", &t, b"", UseOptions::default())),
        KeyError::Compromised { version: 1, .. }
    ));
    let over = UseOptions {
        allow_compromised: true,
    };
    let before = v.generation();
    assert_eq!(v.decrypt("k", &t, b"", over).unwrap().expose_secret(), b"x");
    assert!(v.generation() > before, "a compromised use is recorded");
    v.set_key_version_state("k", 1, KeyState::Active).unwrap();

    v.rotate_key("k", RotateOptions::default()).unwrap();
    v.destroy_key_version("k", 1).unwrap();
    assert!(matches!(
        key_err(v.decrypt("k", &t, b"", UseOptions::default())),
        KeyError::Destroyed { version: 1, .. }
    ));
    assert!(
        key_err(v.decrypt("k", &t, b"", UseOptions::default()))
            .to_string()
            .contains("was destroyed on 1972-"),
        "the message says when"
    );
    assert!(matches!(
        key_err(v.destroy_key_version("k", 2)),
        KeyError::State { version: 2, .. }
    ));
    assert!(matches!(
        key_err(v.promote_key_version("k", 7)),
        KeyError::UnknownVersion { version: 7, .. }
    ));
    let staged = v
        .rotate_key(
            "k",
            RotateOptions {
                stage: true,
                keep_active: false,
            },
        )
        .unwrap();
    assert_eq!(
        v.key("k").unwrap().primary,
        2,
        "a staged version is not primary"
    );
    v.set_key_floors("k", None, Some(2)).unwrap();
    v.promote_key_version("k", staged).unwrap();
    assert_eq!(v.key("k").unwrap().primary, staged);

    now.store(1_011 * DAY, Ordering::SeqCst);
    assert!(matches!(
        key_err(v.encrypt("k", b"x", b"")),
        KeyError::Expired { .. }
    ));
    v.set_key_expiry("k", None).unwrap();
    v.encrypt("k", b"x", b"").unwrap();
    assert!(matches!(v.key("nope"), Err(Error::NotFound { .. })));
}

#[test]
fn a_key_past_its_rotation_period_rotates_on_its_next_encryption_or_with_due() {
    let now = Arc::new(AtomicI64::new(0));
    let clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let v = Vault::create(
        Arc::new(MemoryBackend::new()),
        &pass(),
        cheap_kdf(),
        VaultOptions {
            clock,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let mut spec = KeySpec::new(Algorithm::XChaCha20Poly1305);
    spec.rotate_every_ms = Some(30 * DAY as u64);
    v.create_key("auto", spec.clone()).unwrap();
    v.create_key("batch", spec).unwrap();
    now.store(29 * DAY, Ordering::SeqCst);
    v.encrypt("auto", b"x", b"").unwrap();
    assert_eq!(v.key("auto").unwrap().primary, 1);
    now.store(31 * DAY, Ordering::SeqCst);
    assert!(v.key("batch").unwrap().rotation_due);
    let t = v.encrypt("auto", b"x", b"").unwrap();
    assert!(token::to_text(&t).unwrap().starts_with("vault:v2:"));
    assert_eq!(
        v.rotate_due_keys().unwrap(),
        vec![("batch".to_string(), 2)],
        "the key rotated by its encryption is no longer due"
    );
    assert!(v.rotate_due_keys().unwrap().is_empty());
}

#[test]
fn signatures_and_data_keys() {
    let v = memory_vault();
    v.create_key("mac", KeySpec::new(Algorithm::HmacSha256))
        .unwrap();
    v.create_key("ed", KeySpec::new(Algorithm::Ed25519))
        .unwrap();
    v.create_key("enc", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    for k in ["mac", "ed"] {
        let sig = v.sign(k, b"message").unwrap();
        v.verify_signature(k, b"message", &sig, UseOptions::default())
            .unwrap();
        assert!(matches!(
            key_err(v.verify_signature(k, b"massage", &sig, UseOptions::default())),
            KeyError::BadSignature { version: 1, .. }
        ));
        v.rotate_key(k, RotateOptions::default()).unwrap();
        v.verify_signature(k, b"message", &sig, UseOptions::default())
            .unwrap();
        assert!(
            token::to_text(&v.sign(k, b"m").unwrap())
                .unwrap()
                .starts_with("vault:v2:")
        );
    }
    // An Ed25519 signature verifies with the public key alone, by any implementation.
    let sig = v.sign("ed", b"message").unwrap();
    let public = v.public_key("ed", None).unwrap();
    let raw: [u8; 64] = sig[token::TOKEN_HEADER_LEN..].try_into().unwrap();
    vault_crypto::sign::verify(&public, b"message", &raw).unwrap();
    assert!(matches!(
        key_err(v.public_key("mac", None)),
        KeyError::NotCapable { .. }
    ));
    let (dk, wrapped) = v.datakey("enc", b"file 1").unwrap();
    assert_eq!(dk.len(), 32);
    assert_eq!(
        v.decrypt("enc", &wrapped, b"file 1", UseOptions::default())
            .unwrap(),
        dk
    );
}

#[test]
fn streams_round_trip_at_chunk_edges_and_refuse_truncation() {
    let v = memory_vault();
    v.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let chunk = vault_store::keys::stream::CHUNK_SIZE as usize;
    for len in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut sealed = Vec::new();
        let n = v
            .encrypt_stream("k", b"ad", &mut &data[..], &mut sealed)
            .unwrap();
        assert_eq!(n, len as u64);
        let mut out = Vec::new();
        v.decrypt_stream(
            "k",
            b"ad",
            &mut &sealed[..],
            &mut out,
            UseOptions::default(),
        )
        .unwrap();
        assert_eq!(out, data, "length {len}");
        // Cut at a chunk boundary (what a truncating attacker would choose), or anywhere.
        for cut in [sealed.len() - 1, sealed.len().saturating_sub(chunk + 16)] {
            if cut <= token::TOKEN_HEADER_LEN + token::STREAM_HEADER_LEN {
                continue;
            }
            let r = v.decrypt_stream(
                "k",
                b"ad",
                &mut &sealed[..cut],
                &mut Vec::new(),
                UseOptions::default(),
            );
            assert!(
                matches!(key_err(r), KeyError::Decrypt { .. }),
                "cut at {cut}"
            );
        }
    }
    // A one-shot token also decrypts through the stream interface.
    let t = v.encrypt("k", b"small", b"ad").unwrap();
    let mut out = Vec::new();
    v.decrypt_stream("k", b"ad", &mut &t[..], &mut out, UseOptions::default())
        .unwrap();
    assert_eq!(out, b"small");
}

/// Every record's plaintext in the vault directory, read with the passphrase through
/// vault-format alone: what an attacker holding the passphrase and the files would see.
fn key_materials(dir: &std::path::Path) -> Vec<(String, u32, Vec<u8>)> {
    use vault_format::log::{FRAME_PREFIX_LEN, FrameView, LOG_HEADER_LEN, frame_len_from_prefix};
    use vault_format::payload::Payload;
    let header =
        vault_format::VaultHeader::decode(&std::fs::read(dir.join("header")).unwrap()).unwrap();
    let (master, _) = header.unlock(&pass()).unwrap();
    let record_key = vault_crypto::derive::RecordKey::derive(&master, header.vault_id.as_bytes());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("log.") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut at = LOG_HEADER_LEN;
        while at + FRAME_PREFIX_LEN <= bytes.len() {
            let len = frame_len_from_prefix(bytes[at..at + 4].try_into().unwrap()).unwrap();
            let body = &bytes[at + 4..at + 4 + len];
            for rec in FrameView::parse(body).unwrap().records() {
                let (_, env) = rec.unwrap();
                let plain = env.open(&record_key, &header.vault_id).unwrap();
                if let Payload::KeyVersion(p) =
                    Payload::decode(env.kind, plain.expose_secret()).unwrap()
                {
                    out.push((p.name, p.version, p.material.expose_secret().to_vec()));
                }
            }
            at += 4 + len;
        }
    }
    out
}

#[test]
fn destroyed_material_is_gone_from_the_files_after_the_next_compaction() {
    let d = TestDir::new();
    let v = d.create();
    v.create_key("k", KeySpec::new(Algorithm::HmacSha256))
        .unwrap();
    v.rotate_key("k", RotateOptions::default()).unwrap();
    let sig = v.sign("k", b"m").unwrap();
    let v1: Vec<u8> = key_materials(&d.vault_dir())
        .into_iter()
        .find(|(n, ver, m)| n == "k" && *ver == 1 && !m.is_empty())
        .unwrap()
        .2;
    let holds = |needle: &[u8]| {
        std::fs::read_dir(d.vault_dir()).unwrap().any(|e| {
            let b = std::fs::read(e.unwrap().path()).unwrap_or_default();
            b.windows(needle.len()).any(|w| w == needle)
        })
    };
    v.destroy_key_version("k", 1).unwrap();
    v.compact().unwrap();
    let left = key_materials(&d.vault_dir());
    assert!(
        left.iter().all(|(_, ver, m)| *ver != 1 || m.is_empty()),
        "no record holds version 1's material"
    );
    assert!(left.iter().any(|(_, ver, m)| *ver == 2 && m.len() == 32));
    assert!(
        !holds(&v1),
        "the raw bytes are nowhere in the vault directory"
    );
    let info = v.key("k").unwrap();
    assert_eq!(info.version(1).unwrap().state, KeyState::Destroyed);
    // Version 2 still works after reopening from the compacted files and the index.
    drop(v);
    let v = d.open().unwrap();
    v.verify_signature("k", b"m", &sig, UseOptions::default())
        .unwrap();
}

// The lifecycle against a model: several keys (encryption, HMAC and Ed25519), each with its
// own versions, states, floors and expiry; making (encrypt, sign) and opening (decrypt, verify,
// rewrap) checked against what the model says every time.

#[derive(Clone, Debug)]
enum Op {
    Create,
    Rotate {
        key: u8,
        stage: bool,
        keep_active: bool,
    },
    Promote(u8, u8),
    SetState(u8, u8, KeyState),
    Destroy(u8, u8),
    Floors(u8, Option<u8>, Option<u8>),
    /// Encrypt (an encryption key) or sign (a signing key) with the primary.
    Make(u8),
    /// Decrypt or verify a token made earlier.
    Open(u8, u8),
    Rewrap(u8, u8),
    Advance(u8),
    Expire(u8, Option<u8>),
    Reopen,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    let states = prop::sample::select(vec![
        KeyState::Active,
        KeyState::Deactivated,
        KeyState::Disabled,
        KeyState::Compromised,
    ]);
    prop_oneof![
        Just(Op::Create),
        (any::<u8>(), any::<bool>(), any::<bool>()).prop_map(|(key, stage, keep_active)| {
            Op::Rotate {
                key,
                stage,
                keep_active,
            }
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Promote(k, v)),
        (any::<u8>(), any::<u8>(), states).prop_map(|(k, v, s)| Op::SetState(k, v, s)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Destroy(k, v)),
        (
            any::<u8>(),
            prop::option::of(0u8..6),
            prop::option::of(0u8..6)
        )
            .prop_map(|(k, a, b)| Op::Floors(k, a, b)),
        any::<u8>().prop_map(Op::Make),
        any::<u8>().prop_map(Op::Make),
        (any::<u8>(), any::<u8>()).prop_map(|(k, t)| Op::Open(k, t)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, t)| Op::Open(k, t)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, t)| Op::Rewrap(k, t)),
        (0u8..40).prop_map(Op::Advance),
        (any::<u8>(), prop::option::of(0u8..40)).prop_map(|(k, d)| Op::Expire(k, d)),
        Just(Op::Reopen),
        Just(Op::Compact),
    ]
}

#[derive(Debug)]
struct Model {
    name: String,
    algorithm: Algorithm,
    states: BTreeMap<u32, KeyState>,
    primary: u32,
    min_decrypt: u32,
    min_encrypt: u32,
    expires: Option<i64>,
    /// Tokens made (ciphertexts or signatures), with the version that made them and the
    /// plaintext or message.
    tokens: Vec<(Vec<u8>, u32, Vec<u8>)>,
}

impl Model {
    fn new(name: String, algorithm: Algorithm) -> Self {
        Model {
            name,
            algorithm,
            states: BTreeMap::from([(1, KeyState::Active)]),
            primary: 1,
            min_decrypt: 0,
            min_encrypt: 0,
            expires: None,
            tokens: Vec::new(),
        }
    }

    /// Mostly an existing version, sometimes one past the last.
    fn pick(&self, i: u8) -> u32 {
        u32::from(i) % (self.states.len() as u32 + 1) + 1
    }
}

/// Which error the model expects for opening version `v`, if any.
fn open_refusal(m: &Model, v: u32) -> Option<&'static str> {
    match m.states.get(&v) {
        None => Some("unknown"),
        Some(_) if v < m.min_decrypt => Some("floor"),
        Some(KeyState::Disabled) => Some("disabled"),
        Some(KeyState::Compromised) => Some("compromised"),
        Some(KeyState::Destroyed) => Some("destroyed"),
        Some(_) => None,
    }
}

fn make_refusal(m: &Model, now: i64) -> Option<&'static str> {
    if m.expires.is_some_and(|e| now >= e) {
        return Some("expired");
    }
    match m.states[&m.primary] {
        KeyState::Active => None,
        KeyState::Disabled => Some("disabled"),
        KeyState::Compromised => Some("compromised"),
        _ => Some("state"),
    }
    .or_else(|| (m.primary < m.min_encrypt).then_some("floor"))
}

fn kind(e: &KeyError) -> &'static str {
    match e {
        KeyError::UnknownVersion { .. } => "unknown",
        KeyError::BelowFloor { .. } => "floor",
        KeyError::Disabled { .. } => "disabled",
        KeyError::Compromised { .. } => "compromised",
        KeyError::Destroyed { .. } => "destroyed",
        KeyError::Expired { .. } => "expired",
        KeyError::State { .. } => "state",
        KeyError::NotCapable { .. } => "capable",
        other => panic!("unexpected {other:?}"),
    }
}

fn expect<T: std::fmt::Debug>(
    r: Result<T, Error>,
    want: Option<&'static str>,
    what: &str,
) -> Result<Option<T>, TestCaseError> {
    match (r, want) {
        (Ok(t), None) => Ok(Some(t)),
        (Err(Error::Key(e)), Some(w)) => {
            prop_assert_eq!(kind(&e), w, "{}: {}", what, e);
            Ok(None)
        }
        (r, w) => Err(TestCaseError::fail(format!(
            "{what}: got {r:?}, model says {w:?}"
        ))),
    }
}

const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::XChaCha20Poly1305,
    Algorithm::HmacSha256,
    Algorithm::Ed25519,
];

fn run(ops: &[Op], backend: Arc<dyn Backend>, options: VaultOptions) -> Result<(), TestCaseError> {
    let now = Arc::new(AtomicI64::new(DAY));
    let options = VaultOptions {
        clock: {
            let now = now.clone();
            Clock::from_fn(move || now.load(Ordering::SeqCst))
        },
        ..options
    };
    let mut v = Vault::create(backend.clone(), &pass(), cheap_kdf(), options.clone()).unwrap();
    v.create_key("k0", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let mut keys = vec![Model::new("k0".into(), Algorithm::XChaCha20Poly1305)];
    for (step, op) in ops.iter().enumerate() {
        let t = now.load(Ordering::SeqCst);
        let what = format!("step {step} {op:?}");
        let n = keys.len();
        let at = |k: &u8| usize::from(*k) % n;
        match op {
            Op::Create => {
                let algorithm = ALGORITHMS[n % ALGORITHMS.len()];
                let name = format!("k{n}");
                v.create_key(&name, KeySpec::new(algorithm)).unwrap();
                keys.push(Model::new(name, algorithm));
            }
            Op::Rotate {
                key,
                stage,
                keep_active,
            } => {
                let m = &mut keys[at(key)];
                let new = v
                    .rotate_key(
                        &m.name,
                        RotateOptions {
                            stage: *stage,
                            keep_active: *keep_active,
                        },
                    )
                    .unwrap();
                prop_assert_eq!(new, m.states.len() as u32 + 1);
                if *stage {
                    m.states.insert(new, KeyState::Pending);
                } else {
                    if !keep_active && m.states[&m.primary] == KeyState::Active {
                        m.states.insert(m.primary, KeyState::Deactivated);
                    }
                    m.states.insert(new, KeyState::Active);
                    m.primary = new;
                }
            }
            Op::Promote(key, i) => {
                let m = &mut keys[at(key)];
                let ver = m.pick(*i);
                let want = match m.states.get(&ver) {
                    None => Some("unknown"),
                    Some(KeyState::Destroyed) => Some("destroyed"),
                    Some(KeyState::Pending | KeyState::Active) if ver < m.min_encrypt => {
                        Some("floor")
                    }
                    Some(KeyState::Pending | KeyState::Active) => None,
                    Some(_) => Some("state"),
                };
                if expect(v.promote_key_version(&m.name, ver), want, &what)?.is_some() {
                    if ver != m.primary && m.states[&m.primary] == KeyState::Active {
                        m.states.insert(m.primary, KeyState::Deactivated);
                    }
                    m.states.insert(ver, KeyState::Active);
                    m.primary = ver;
                }
            }
            Op::SetState(key, i, state) => {
                let m = &mut keys[at(key)];
                let ver = m.pick(*i);
                let want = match m.states.get(&ver) {
                    None => Some("unknown"),
                    Some(KeyState::Destroyed) => Some("destroyed"),
                    Some(_) if ver == m.primary && *state == KeyState::Deactivated => Some("state"),
                    Some(_) => None,
                };
                if expect(v.set_key_version_state(&m.name, ver, *state), want, &what)?.is_some() {
                    m.states.insert(ver, *state);
                }
            }
            Op::Destroy(key, i) => {
                let m = &mut keys[at(key)];
                let ver = m.pick(*i);
                let want = match m.states.get(&ver) {
                    None => Some("unknown"),
                    Some(KeyState::Destroyed) => None,
                    Some(_) if ver == m.primary => Some("state"),
                    Some(_) => None,
                };
                if expect(v.destroy_key_version(&m.name, ver), want, &what)?.is_some() {
                    m.states.insert(ver, KeyState::Destroyed);
                }
            }
            Op::Floors(key, dec, enc) => {
                let m = &mut keys[at(key)];
                let (dec, enc) = (dec.map(u32::from), enc.map(u32::from));
                let r = v.set_key_floors(&m.name, dec, enc);
                if dec.is_some_and(|f| f > m.primary) || enc.is_some_and(|f| f > m.primary) {
                    prop_assert!(matches!(r, Err(Error::Invalid { .. })), "{what}: {r:?}");
                } else {
                    r.unwrap();
                    m.min_decrypt = dec.unwrap_or(m.min_decrypt);
                    m.min_encrypt = enc.unwrap_or(m.min_encrypt);
                }
            }
            Op::Make(key) => {
                let m = &mut keys[at(key)];
                let plain = format!("message {step}").into_bytes();
                let want = make_refusal(m, t);
                let r = if m.algorithm == Algorithm::XChaCha20Poly1305 {
                    v.encrypt(&m.name, &plain, b"ad")
                } else {
                    v.sign(&m.name, &plain)
                };
                if let Some(tok) = expect(r, want, &what)? {
                    let h = token::TokenHeader::decode(&tok).unwrap().0;
                    prop_assert_eq!(h.version, m.primary);
                    m.tokens.push((tok, m.primary, plain));
                }
            }
            Op::Open(key, i) | Op::Rewrap(key, i) => {
                let m = &mut keys[at(key)];
                if m.tokens.is_empty() {
                    continue;
                }
                let (tok, ver, plain) = m.tokens[usize::from(*i) % m.tokens.len()].clone();
                let encryption = m.algorithm == Algorithm::XChaCha20Poly1305;
                if matches!(op, Op::Open(..)) {
                    let want = open_refusal(m, ver);
                    if encryption {
                        if let Some(got) = expect(
                            v.decrypt(&m.name, &tok, b"ad", UseOptions::default()),
                            want,
                            &what,
                        )? {
                            prop_assert_eq!(got.expose_secret(), &plain[..]);
                        }
                    } else {
                        expect(
                            v.verify_signature(&m.name, &plain, &tok, UseOptions::default()),
                            want,
                            &what,
                        )?;
                    }
                } else {
                    let want = if encryption {
                        open_refusal(m, ver).or_else(|| make_refusal(m, t))
                    } else {
                        Some("capable")
                    };
                    if let Some(new) = expect(
                        v.rewrap(&m.name, &tok, b"ad", UseOptions::default()),
                        want,
                        &what,
                    )? {
                        prop_assert_eq!(
                            token::TokenHeader::decode(&new).unwrap().0.version,
                            m.primary
                        );
                        m.tokens.push((new, m.primary, plain));
                    }
                }
            }
            Op::Advance(days) => {
                now.fetch_add(i64::from(*days) * DAY, Ordering::SeqCst);
            }
            Op::Expire(key, days) => {
                let m = &mut keys[at(key)];
                let when = days.map(|d| t + i64::from(d) * DAY);
                v.set_key_expiry(&m.name, when).unwrap();
                m.expires = when;
            }
            Op::Reopen => {
                drop(v);
                v = Vault::open(backend.clone(), &pass(), options.clone()).unwrap();
            }
            Op::Compact => v.compact().unwrap(),
        }
        // The vault's view agrees with the model after every step, for every key.
        for m in &keys {
            let info = v.key(&m.name).unwrap();
            prop_assert_eq!(info.primary, m.primary, "{} {}", what, m.name);
            let states: BTreeMap<u32, KeyState> =
                info.versions.iter().map(|x| (x.version, x.state)).collect();
            prop_assert_eq!(&states, &m.states, "{} {}", what, m.name);
        }
    }
    // A fresh handle sees the same, and the whole log verifies.
    let fresh = Vault::open(backend, &pass(), options).unwrap();
    prop_assert_eq!(fresh.keys().unwrap(), v.keys().unwrap());
    fresh.verify().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_key_lifecycle_matches_the_model_in_memory(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, Arc::new(MemoryBackend::new()), VaultOptions::default())?;
    }

    #[test]
    fn the_key_lifecycle_matches_the_model_on_files(ops in prop::collection::vec(op(), 1..40)) {
        let d = TestDir::new();
        run(&ops, Arc::new(FileBackend::new(d.vault_dir())), d.options())?;
    }
}

/// A handle keeps the material it has read, but checks the key's state on every use against the
/// vault as it is: a version another handle (another process) disabled or destroyed is refused at
/// once, and re-enabled is usable again.
#[test]
fn material_a_handle_has_read_is_never_used_past_a_change_by_another_handle() {
    let d = TestDir::new();
    let a = d.create();
    a.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let t = a.encrypt("k", b"x", b"").unwrap();
    a.rotate_key("k", RotateOptions::default()).unwrap();
    assert_eq!(
        a.decrypt("k", &t, b"", UseOptions::default())
            .unwrap()
            .expose_secret(),
        b"x"
    );
    let b = d.open().unwrap();
    b.set_key_version_state("k", 1, KeyState::Disabled).unwrap();
    assert!(matches!(
        key_err(a.decrypt("k", &t, b"", UseOptions::default())),
        KeyError::Disabled { .. }
    ));
    b.set_key_version_state("k", 1, KeyState::Deactivated)
        .unwrap();
    assert_eq!(
        a.decrypt("k", &t, b"", UseOptions::default())
            .unwrap()
            .expose_secret(),
        b"x"
    );
    b.destroy_key_version("k", 1).unwrap();
    b.compact().unwrap();
    assert!(matches!(
        key_err(a.decrypt("k", &t, b"", UseOptions::default())),
        KeyError::Destroyed { .. }
    ));
    // A master-key rotation by the other handle: this one is told to reopen, not served from
    // what it kept.
    b.rotate_master_key(&pass(), false).unwrap();
    assert!(matches!(a.encrypt("k", b"y", b""), Err(Error::Rekeyed)));
}

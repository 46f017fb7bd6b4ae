//! Every Wycheproof and RFC vector for XChaCha20-Poly1305, HKDF-SHA256 and HMAC-SHA256, and the
//! RFC 9106 Argon2id vector, run through vault-crypto's public API. Valid vectors must match;
//! invalid ones must be rejected. Each test prints its counts (`cargo test -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use serde_json::Value;
use vault_crypto::aead::{self, Nonce};
use vault_crypto::kdf::{self, KdfParams};
use vault_crypto::{Error, Key256, derive, mac};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hexf(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing {field}")),
    )
    .unwrap()
}

/// Iterates (group, test) over a Wycheproof file and checks the file's declared test count.
fn wycheproof_tests(file: &Value) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for g in file["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            out.push((g.clone(), t.clone()));
        }
    }
    assert_eq!(out.len() as u64, file["numberOfTests"].as_u64().unwrap());
    out
}

#[test]
fn wycheproof_xchacha20_poly1305() {
    let file = load("xchacha20_poly1305_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for (_, t) in wycheproof_tests(&file) {
        let id = &t["tcId"];
        let key = Key256::from_slice(&hexf(&t, "key")).unwrap();
        let (iv, aad, msg) = (hexf(&t, "iv"), hexf(&t, "aad"), hexf(&t, "msg"));
        let mut ct = hexf(&t, "ct");
        ct.extend_from_slice(&hexf(&t, "tag"));
        match t["result"].as_str().unwrap() {
            "valid" => {
                let nonce = Nonce::from_slice(&iv).unwrap();
                let sealed = aead::seal_with_nonce(&key, &nonce, &aad, &msg).unwrap();
                assert_eq!(sealed, ct, "tcId {id}: seal");
                let opened = aead::open(&key, &nonce, &aad, &ct).unwrap();
                assert_eq!(opened.expose_secret(), &msg[..], "tcId {id}: open");
                valid += 1;
            }
            "invalid" => {
                // Rejected either at the nonce (wrong length) or at authentication.
                let rejected = match Nonce::from_slice(&iv) {
                    Err(Error::InvalidLength { .. }) => true,
                    Err(e) => panic!("tcId {id}: unexpected {e:?}"),
                    Ok(nonce) => aead::open(&key, &nonce, &aad, &ct) == Err(Error::Decrypt),
                };
                assert!(rejected, "tcId {id}: invalid vector accepted");
                invalid += 1;
            }
            other => panic!("tcId {id}: unexpected result {other}"),
        }
    }
    println!("wycheproof xchacha20-poly1305: {valid} valid, {invalid} invalid");
    assert_eq!((valid, invalid), (246, 69));
}

#[test]
fn wycheproof_hkdf_sha256() {
    let file = load("hkdf_sha256_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for (_, t) in wycheproof_tests(&file) {
        let id = &t["tcId"];
        let salt = hexf(&t, "salt");
        let size = t["size"].as_u64().unwrap() as usize;
        let out = derive::hkdf_sha256(Some(&salt), &hexf(&t, "ikm"), &hexf(&t, "info"), size);
        match t["result"].as_str().unwrap() {
            "valid" => {
                assert_eq!(
                    out.unwrap().expose_secret(),
                    &hexf(&t, "okm")[..],
                    "tcId {id}"
                );
                valid += 1;
            }
            "invalid" => {
                assert!(
                    matches!(out, Err(Error::HkdfOutputTooLong { .. })),
                    "tcId {id}"
                );
                invalid += 1;
            }
            other => panic!("tcId {id}: unexpected result {other}"),
        }
    }
    println!("wycheproof hkdf-sha256: {valid} valid, {invalid} invalid");
    assert_eq!((valid, invalid), (83, 3));
}

#[test]
fn wycheproof_hmac_sha256() {
    let file = load("hmac_sha256_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for (g, t) in wycheproof_tests(&file) {
        let id = &t["tcId"];
        let tag_len = g["tagSize"].as_u64().unwrap() as usize / 8;
        let (key, msg, tag) = (hexf(&t, "key"), hexf(&t, "msg"), hexf(&t, "tag"));
        let result = mac::verify(&key, &[&msg], &tag);
        match t["result"].as_str().unwrap() {
            "valid" => {
                assert_eq!(tag.len(), tag_len);
                assert!(result.is_ok(), "tcId {id}: valid tag rejected");
                let computed = mac::hmac_sha256(&key, &[&msg]);
                assert_eq!(&computed.as_bytes()[..tag_len], &tag[..], "tcId {id}");
                valid += 1;
            }
            "invalid" => {
                assert_eq!(
                    result,
                    Err(Error::MacMismatch),
                    "tcId {id}: invalid tag accepted"
                );
                invalid += 1;
            }
            other => panic!("tcId {id}: unexpected result {other}"),
        }
    }
    println!("wycheproof hmac-sha256: {valid} valid, {invalid} invalid");
    assert_eq!((valid, invalid), (66, 108));
}

#[test]
fn rfc5869_hkdf_sha256() {
    let file = load("rfc_vectors.json");
    let cases = file["hkdf_sha256_rfc5869"].as_array().unwrap();
    for c in cases {
        let salt = hexf(c, "salt");
        let salt = if salt.is_empty() {
            None
        } else {
            Some(&salt[..])
        };
        let len = c["L"].as_u64().unwrap() as usize;
        let okm = derive::hkdf_sha256(salt, &hexf(c, "ikm"), &hexf(c, "info"), len).unwrap();
        assert_eq!(
            okm.expose_secret(),
            &hexf(c, "okm")[..],
            "RFC 5869 case {}",
            c["tc"]
        );
    }
    println!("rfc 5869 hkdf-sha256: {} valid", cases.len());
    assert_eq!(cases.len(), 3);
}

#[test]
fn rfc4231_hmac_sha256() {
    let file = load("rfc_vectors.json");
    let cases = file["hmac_sha256_rfc4231"].as_array().unwrap();
    for c in cases {
        let (key, data) = (hexf(c, "key"), hexf(c, "data"));
        let expected = if c.get("mac").is_some() {
            hexf(c, "mac")
        } else {
            hexf(c, "mac_truncated_128")
        };
        mac::verify(&key, &[&data], &expected).unwrap();
        assert_eq!(
            &mac::hmac_sha256(&key, &[&data]).as_bytes()[..expected.len()],
            &expected[..],
            "RFC 4231 case {}",
            c["tc"]
        );
        let mut wrong = expected.clone();
        wrong[0] ^= 1;
        assert_eq!(mac::verify(&key, &[&data], &wrong), Err(Error::MacMismatch));
    }
    println!("rfc 4231 hmac-sha256: {} valid", cases.len());
    assert_eq!(cases.len(), 7);
}

#[test]
fn draft_irtf_cfrg_xchacha_a_3_1() {
    let file = load("rfc_vectors.json");
    let c = &file["xchacha20poly1305_draft_irtf_cfrg_xchacha_03_A_3_1"];
    let key = Key256::from_slice(&hexf(c, "key")).unwrap();
    let nonce = Nonce::from_slice(&hexf(c, "nonce")).unwrap();
    let mut expected = hexf(c, "ciphertext");
    expected.extend_from_slice(&hexf(c, "tag"));
    let sealed =
        aead::seal_with_nonce(&key, &nonce, &hexf(c, "aad"), &hexf(c, "plaintext")).unwrap();
    assert_eq!(sealed, expected);
    let opened = aead::open(&key, &nonce, &hexf(c, "aad"), &sealed).unwrap();
    assert_eq!(opened.expose_secret(), &hexf(c, "plaintext")[..]);
}

#[test]
fn rfc9106_argon2id() {
    let file = load("rfc_vectors.json");
    let c = &file["argon2id_rfc9106_s5_3"];
    let field = |f: &str| c[f].as_u64().unwrap() as u32;
    let params = KdfParams::new(
        field("memory_kib"),
        field("iterations"),
        field("parallelism"),
        field("tag_len"),
    )
    .unwrap();
    let tag = kdf::derive_with_secret(
        &hexf(c, "password"),
        &hexf(c, "salt"),
        &hexf(c, "secret"),
        &hexf(c, "ad"),
        &params,
    )
    .unwrap();
    assert_eq!(tag.expose_secret(), &hexf(c, "tag")[..]);
    // And without secret and associated data, through the everyday API (pyca argon2id.txt COUNT=2).
    let plain = kdf::derive(&hexf(c, "password"), &hexf(c, "salt"), &params).unwrap();
    assert_eq!(
        hex::encode(plain.expose_secret()),
        "03aab965c12001c9d7d0d2de33192c0494b684bb148196d73c1df1acaf6d0c2e"
    );
}

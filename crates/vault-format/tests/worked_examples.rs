//! docs/FORMAT.md ends with worked examples built from fixed keys, salts and nonces. These tests
//! rebuild each example with the codecs and require the bytes to match the spec exactly, so another
//! implementation can be written from the spec alone and the spec cannot drift from the code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;
use vault_crypto::SecretBytes;
use vault_format::{RecordEnvelope, VaultHeader};

#[test]
fn print_examples() {
    // `cargo test -p vault-format --test worked_examples -- --nocapture print` regenerates the dumps.
    println!("header:\n{}", dump(&example_header().encode()));
    println!("envelope:\n{}", dump(&example_envelope().encode()));
}

#[test]
fn header_example_matches_spec_byte_for_byte() {
    let spec = spec_example("header");
    assert_eq!(dump(&example_header().encode()), dump(&spec));
    let decoded = VaultHeader::decode(&spec).unwrap();
    assert_eq!(decoded, example_header());
    let (key, slot) = decoded
        .unlock(&SecretBytes::from_slice(PASSPHRASE))
        .unwrap();
    assert_eq!((key == master(), slot), (true, 0));
}

#[test]
fn envelope_example_matches_spec_byte_for_byte() {
    let spec = spec_example("envelope");
    assert_eq!(dump(&example_envelope().encode()), dump(&spec));
    let env = RecordEnvelope::decode(&spec).unwrap();
    assert_eq!(
        env.open(&record_key(), &vault_id())
            .unwrap()
            .expose_secret(),
        b"hello, vault"
    );
}

#[test]
fn subkey_example_matches_spec() {
    assert_eq!(
        record_key().expose_secret().to_vec(),
        spec_example("record-key")
    );
}

#[test]
fn intermediate_values_match_spec() {
    use vault_crypto::{derive, kdf};
    let kek = kdf::derive_key(PASSPHRASE, &salt(), &example_kdf()).unwrap();
    assert_eq!(kek.expose_secret().to_vec(), spec_example("kek"));
    let mac_key = derive::subkey(&master(), derive::Purpose::RecordMac, vault_id().as_bytes());
    assert_eq!(mac_key.expose_secret().to_vec(), spec_example("mac-key"));
}

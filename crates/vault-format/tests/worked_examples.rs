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
    println!("log:\n{}", dump(&example_log()));
    println!("payload:\n{}", dump(&example_payload().encode().unwrap()));
    println!("rollback:\n{}", dump(&example_rollback()));
    println!("index:\n{}", dump(&example_index()));
    println!(
        "key-payload:\n{}",
        dump(&example_key_payload().encode().unwrap())
    );
    println!("token:\n{}", dump(&example_token()));
    println!(
        "token text: {}",
        vault_format::token::to_text(&example_token()).unwrap()
    );
    println!("stream:\n{}", dump(&example_stream()));
    println!("mac-token:\n{}", dump(&example_mac_token()));
    println!(
        "mac text: {}",
        vault_format::token::to_text(&example_mac_token()).unwrap()
    );
    println!("export:\n{}", dump(&example_export()));
    println!(
        "export json: {}",
        vault_format::export::to_json(&example_export()).unwrap()
    );
    println!(
        "export contents:\n{}",
        dump(&example_export_contents().encode().unwrap())
    );
}

#[test]
fn export_example_matches_spec_byte_for_byte() {
    use vault_format::export;
    let spec = spec_example("export");
    assert_eq!(dump(&example_export()), dump(&spec));
    let opened = export::open(&spec, PASSPHRASE, &|_| None).unwrap();
    assert_eq!(opened, example_export_contents());
    assert!(matches!(
        export::open(&spec, b"wrong", &|_| None),
        Err(export::OpenError::WrongPassphrase)
    ));
    let json = spec_text("export-json");
    assert_eq!(export::from_json(&json).unwrap(), spec);
    assert_eq!(export::to_json(&spec).unwrap().trim(), json);
}

#[test]
fn key_examples_match_spec_byte_for_byte() {
    use vault_format::payload::Payload;
    use vault_format::token;
    let spec = spec_example("key-payload");
    assert_eq!(dump(&example_key_payload().encode().unwrap()), dump(&spec));
    assert_eq!(
        Payload::decode(vault_format::RecordKind::Key, &spec).unwrap(),
        example_key_payload()
    );
    let spec = spec_example("token");
    assert_eq!(dump(&example_token()), dump(&spec));
    assert_eq!(
        token::open(&key_material(), &spec, b"order 7")
            .unwrap()
            .expose_secret(),
        b"attack at dawn"
    );
    assert!(token::open(&key_material(), &spec, b"order 8").is_err());
    let text = spec_text("token-text");
    assert_eq!(token::from_text(&text).unwrap(), spec);
    assert_eq!(dump(&example_stream()), dump(&spec_example("stream")));
    assert_eq!(dump(&example_mac_token()), dump(&spec_example("mac-token")));
}

#[test]
fn log_example_matches_spec_byte_for_byte() {
    use vault_format::log::{Frame, decode_log_header};
    let spec = spec_example("log");
    assert_eq!(dump(&example_log()), dump(&spec));
    // Read it back as a reader would: header, then frames chained from a zero MAC.
    assert_eq!(decode_log_header(&spec[..24]).unwrap(), 0);
    let mut rest = &spec[24..];
    let mut prev = [0u8; 32];
    let mut generations = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let body = &rest[4..4 + len];
        let f = Frame::decode(body).unwrap();
        f.verify(body, &mac_key(), &vault_id(), 0, &prev).unwrap();
        prev = f.mac;
        generations.push(f.generation);
        rest = &rest[4 + len..];
    }
    assert_eq!(generations, [1, 2]);
}

#[test]
fn payload_example_matches_spec_byte_for_byte() {
    use vault_format::payload::Payload;
    let spec = spec_example("payload");
    assert_eq!(dump(&example_payload().encode().unwrap()), dump(&spec));
    assert_eq!(
        Payload::decode(vault_format::RecordKind::SecretVersion, &spec).unwrap(),
        example_payload()
    );
}

#[test]
fn rollback_example_matches_spec_byte_for_byte() {
    let spec = spec_example("rollback");
    assert_eq!(dump(&example_rollback()), dump(&spec));
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
        record_key().key().expose_secret().to_vec(),
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

#[test]
fn index_example_matches_spec_byte_for_byte_and_reads_back() {
    use vault_format::index::*;
    let spec = spec_example("index");
    assert_eq!(dump(&example_index()), dump(&spec));
    // Read it as a reader would: the footer, the header block, the root leaf.
    let key = vault_crypto::derive::IndexKey::derive(&master(), vault_id().as_bytes());
    let footer = Footer::decode(&spec[spec.len() - FOOTER_LEN..]).unwrap();
    let (off, len) = (footer.header_offset as usize, footer.header_len as usize);
    let header = footer
        .open_block(&key, off as u64, BlockKind::Header, &spec[off..off + len])
        .unwrap();
    let header = IndexHeader::decode(header.expose_secret(), 1).unwrap();
    let (root, depth) = header.root.unwrap();
    assert_eq!((depth, header.secrets, header.cursor.1), (1, 1, 263));
    let leaf = footer
        .open_block(
            &key,
            root.offset,
            BlockKind::Leaf,
            &spec[root.offset as usize..(root.offset + u64::from(root.len)) as usize],
        )
        .unwrap();
    let entries = decode_leaf(leaf.expose_secret()).unwrap();
    assert_eq!(entries[0].name, "db/password");
    // A block read at another offset, or as another kind, does not open.
    assert!(
        footer
            .open_block(&key, 1, BlockKind::Leaf, &spec[..root.len as usize])
            .is_err()
    );
    assert!(
        footer
            .open_block(&key, 0, BlockKind::Interior, &spec[..root.len as usize])
            .is_err()
    );
}

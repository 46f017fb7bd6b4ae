//! Fuzzes the index file's parsers (footer, leaf, interior and header blocks' plaintexts): no
//! input may panic, and any input that decodes must re-encode to exactly the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::index(data);
});

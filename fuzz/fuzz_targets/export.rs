//! Fuzzes the export container's parsers (binary header, decrypted contents, JSON encoding): no
//! input may panic, and what decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::export(data);
});

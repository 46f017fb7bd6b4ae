//! Fuzzes the backup container's parsers (header, payload reader, a whole container opened with
//! a fixed passphrase): no input may panic, and a header that decodes re-encodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_backup::fuzzing::backup(data);
});

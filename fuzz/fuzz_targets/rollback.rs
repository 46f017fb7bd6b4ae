//! Fuzzes the rollback record parser: no input may panic, and any input that decodes must re-encode to exactly
//! the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::rollback(data);
});

//! Fuzzes the audit trail's parsers (an entry, a file's frames forwards and backwards, a whole
//! main or pending file checked under a fixed key): no input may panic, and what decodes
//! re-encodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::audit(data);
});

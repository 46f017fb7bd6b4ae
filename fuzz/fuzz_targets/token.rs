//! Fuzzes the managed-key token parsers (binary header and bodies, the text form, the streaming
//! text reader, opening a one-shot token): no input may panic, and what decodes re-encodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::token(data);
});

//! Fuzzes the log's torn-tail-or-damage rule (`vault_format::log::classify_tail`): no input may
//! panic, and the verdict must keep the rule's invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vault_format::fuzzing::tail(data);
});

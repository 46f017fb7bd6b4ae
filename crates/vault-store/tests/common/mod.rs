//! Helpers shared by the vault-store integration tests: the dev-only vault-testkit crate.

pub use vault_testkit::*;

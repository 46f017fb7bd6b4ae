//! Test machinery for the vault crates, used only as a dev-dependency, so that no
//! fault-injection type sits in a library's public API:
//!
//! - [`faulty`]: [`FaultyIo`], the store's I/O seam with injected failures and a trace.
//! - [`dirs`]: test vaults ([`TestDir`], [`memory`]) with cheap KDF parameters.
//! - [`ops`]: [`MutatingOp`], the one list of operations that change a vault, which the crash,
//!   write-order and state-machine harnesses iterate: a new operation is added there once.
//! - [`strategies`]: proptest strategies ([`model_op`], [`mutating_op`]).
//! - [`pg`]: [`PgServer`], a PostgreSQL server of a test's own, for the PostgreSQL backend.
//!
//! ```
//! use vault_testkit::{MutatingOp, TestDir};
//!
//! let d = TestDir::new();
//! let v = d.create();
//! for op in MutatingOp::ALL {
//!     op.prepare(&v);
//! }
//! ```
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)] // test machinery: a failure is the finding

pub mod dirs;
pub mod faulty;
pub mod ops;
pub mod pg;
pub mod strategies;

pub use dirs::*;
pub use faulty::{FaultKind, FaultOp, FaultyIo, SharedFaultyIo};
pub use ops::MutatingOp;
pub use pg::PgServer;
pub use strategies::{ModelOp, model_op, mutating_op};

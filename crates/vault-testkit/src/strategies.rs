//! proptest strategies shared by the property tests: the operations of the model-based state
//! machine over secrets, and sequences of the shared [`MutatingOp`] list.

use proptest::prelude::*;

use crate::ops::MutatingOp;

/// One step of the model-based state machine over secrets (names are `secret/<n>`).
#[derive(Clone, Debug)]
pub enum ModelOp {
    /// A set, with an expected version for check-and-set or none.
    Set {
        name: u8,
        value: Vec<u8>,
        cas: Option<u32>,
    },
    /// Reading the latest version.
    Get { name: u8 },
    /// Reading one version.
    GetVersion { name: u8, version: u32 },
    /// A soft delete.
    Rm { name: u8 },
    /// Undoing a soft delete.
    Undelete { name: u8 },
    /// Destroying a secret.
    Destroy { name: u8 },
    /// Changing how many versions are kept.
    MaxVersions(u32),
    /// Rewriting the log.
    Compact,
    /// A fresh handle on the same storage.
    Reopen,
    /// Changing the passphrase.
    ChangePassphrase,
}

/// A [`ModelOp`], weighted towards writes and reads of four names.
pub fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        6 => (0u8..4, prop::collection::vec(any::<u8>(), 0..40), prop::option::of(0u32..4))
            .prop_map(|(name, value, cas)| ModelOp::Set { name, value, cas }),
        3 => (0u8..4).prop_map(|name| ModelOp::Get { name }),
        2 => (0u8..4, 1u32..6).prop_map(|(name, version)| ModelOp::GetVersion { name, version }),
        2 => (0u8..4).prop_map(|name| ModelOp::Rm { name }),
        1 => (0u8..4).prop_map(|name| ModelOp::Undelete { name }),
        1 => (0u8..4).prop_map(|name| ModelOp::Destroy { name }),
        1 => (1u32..4).prop_map(ModelOp::MaxVersions),
        1 => Just(ModelOp::Compact),
        1 => Just(ModelOp::Reopen),
        1 => Just(ModelOp::ChangePassphrase),
    ]
}

/// Any operation of [`MutatingOp::ALL`], so that a new one joins every property test that draws
/// from here.
pub fn mutating_op() -> impl Strategy<Value = MutatingOp> {
    prop::sample::select(MutatingOp::ALL.to_vec())
}

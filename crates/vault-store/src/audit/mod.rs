//! The audit trail (docs/designs/audit.md; FORMAT.md §6.13): its files, and the seam every
//! public operation goes through to record itself.
//!
//! - [`files`]: the lock, appending to the chain, the pending file and the anchor.
//! - [`segments`]: the chain's files in sequence: names, policy, sealing a file and starting the
//!   next, retention.
//! - [`read`]: reading and checking the whole trail, an entry at a time; copying it for a backup.
//! - [`record`]: one entry per operation, fail-closed, and the trail as a caller reads it.

mod files;
mod read;
mod record;
mod segments;

pub use files::AuditActor;
pub(crate) use files::AuditFiles;
pub use read::{
    AUDIT_PART_LEN, AuditFileInfo, AuditNames, AuditPieces, AuditRead, is_audit_file_name,
};
pub(crate) use record::On;

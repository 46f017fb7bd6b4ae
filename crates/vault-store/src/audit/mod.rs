//! The audit trail (docs/designs/audit.md; FORMAT.md §6.13): its files, and the seam every
//! public operation goes through to record itself.
//!
//! - [`files`]: appending and reading the chain files, the pending file and the anchor.
//! - [`record`]: one entry per operation, fail-closed, and the trail as a caller reads it.

mod files;
mod record;

pub(crate) use files::AuditFiles;
pub use files::{AUDIT_PART_LEN, AuditPieces, AuditRead, is_audit_file_name};
pub(crate) use record::On;

//! One module per group of commands, each command one function taking the parsed arguments.

pub(crate) mod audit;
pub(crate) mod backups;
pub(crate) mod docs;
pub(crate) mod doctor;
pub(crate) mod import;
pub(crate) mod inject;
pub(crate) mod keys;
pub(crate) mod maintenance;
pub(crate) mod members;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod slots;
pub(crate) mod transfer;

//! The agent: `vault unlock` keeps the vault open in a process of its own, so that commands
//! need no passphrase until it locks (docs/OPERATIONS.md, "The agent").
//!
//! - [`place`]: where an agent listens (a private directory per user, a socket per vault).
//! - [`wire`]: the protocol (a JSON line, the client's streams passed beside it).
//! - [`serve`]: the agent process.
//! - [`client`]: `vault unlock`, `vault lock`, and handing a command to the agent.
//! - [`served`]: the command being run for a client, which output and the vault go through.

pub(crate) mod client;
pub(crate) mod place;
pub(crate) mod serve;
pub(crate) mod served;
pub(crate) mod wire;

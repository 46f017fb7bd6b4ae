//! The `vault` command-line tool.
fn main() {}

//! The command groups, a module each; `main.rs` parses, opens the vault and dispatches here.

pub(crate) mod backup;
pub(crate) mod import;

//! The command groups, a module each (as cargo and ripgrep lay theirs out); `main.rs` parses,
//! opens the vault and dispatches here.

pub(crate) mod backup;
pub(crate) mod cred;
pub(crate) mod doctor;
pub(crate) mod events;
pub(crate) mod import;
pub(crate) mod master_key;
pub(crate) mod org;
pub(crate) mod out_file;
pub(crate) mod providers;
pub(crate) mod resolve;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod spend;
pub(crate) mod var;

//! The `keyward` binary end to end, as a user runs it, on SQLite and on PostgreSQL.
//!
//! PostgreSQL runs need `KEYWARD_TEST_DATABASE_URL`; without it they are skipped unless
//! `KEYWARD_TEST_REQUIRE_POSTGRES=1`.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod audit_sinks;
mod backup;
mod browser;
mod cloud;
mod crash;
mod doctor;
mod gateway;
mod hostile_files;
mod import;
mod install;
mod kms;
mod openapi;
mod python_client;
mod realtime;
mod run;
mod sandbox;
mod serve;
mod spend;
mod sso;
mod sso_browser;
mod traces;
mod vault;
mod workload;

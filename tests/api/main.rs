//! Roster's API tests: the real server over real gRPC against real PostgreSQL.

// Test helpers may panic on broken fixtures: that is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cloned_ref_to_slice_refs,
    clippy::result_large_err
)]
// Tests take connections of a server's pool behind its back on purpose (to
// hold them, or to set a scene): the server's own count is not theirs.
#![allow(clippy::disallowed_methods)]

mod admin_cli;
mod api_keys;
mod attributes;
mod attributes_import;
mod auth;
mod auth_cache;
mod auth_matrix;
// Need tools beyond cargo and PostgreSQL (Chromium with playwright-core,
// Python's aiosmtpd): `cargo test --features external-tools` runs them.
#[cfg(feature = "external-tools")]
mod browser;
mod changes;
mod cli;
mod contract;
mod credentials;
mod database_hosts;
mod database_restart;
mod deadline;
#[cfg(feature = "external-tools")]
mod delivery;
mod groups;
mod hardening_authz;
mod hardening_import;
mod hardening_input;
mod hardening_sign_in;
mod helpers;
mod import;
mod import_session;
mod mail;
mod metrics;
mod names;
mod onboarding;
mod organizations;
mod read_lane;
mod request_ergonomics;
mod scim;
mod scim_bulk;
mod scim_groups;
mod scim_rules;
mod search;
mod second_factor;
mod serve_crash;
mod sessions;
mod shared_reads;
#[cfg(feature = "external-tools")]
mod smtp;
mod socket_proxy;
mod status_rule;
mod tls;
mod traces;
mod user_keys;
mod users;

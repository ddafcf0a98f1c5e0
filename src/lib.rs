//! Roster: a multi-tenant user and access directory served over gRPC.
//!
//! Layout: `proto/` → `grpc` (thin tonic services and layers) → `domain`
//! (types, rules, use cases) → `store` (all SQL).

pub mod cli;
pub mod cluster;
pub mod database;
pub mod database_hosts;
pub mod database_watch;
pub mod delivery;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod pages;
pub mod remote;
pub mod scim;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;

/// Code generated from `proto/roster/v1` by build.rs.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
    tonic::include_proto!("roster.v1");

    /// Descriptor set of the Roster contract and the well-known types, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("roster_descriptor");
}

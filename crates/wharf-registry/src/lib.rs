//! wharf's OCI registry: an OCI Distribution Spec v1.1 server.
//!
//! Layers, each knowing only the one below: `routes` (HTTP, one catch-all `/v2/{*rest}` parsed by
//! hand because repository names contain `/`) -> `services` (manifests, blobs, uploads, tags,
//! catalog, referrers, gc) -> `storage` (a trait; filesystem implementation). OCI error codes are
//! mapped to HTTP statuses in `error.rs` only. Access control is behind the [`auth::Authorizer`]
//! seam.

pub mod auth;

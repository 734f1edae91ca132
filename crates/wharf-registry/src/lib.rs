//! wharf's OCI registry: an OCI Distribution Spec v1.1 server.
//!
//! Layers, each knowing only the one below: [`routes`] (HTTP, one catch-all `/v2/{*rest}` parsed
//! by hand because repository names contain `/`) -> [`services`] (manifests, blobs, uploads,
//! tags, catalog, referrers, gc) -> [`storage`] (a trait; filesystem implementation). OCI error
//! codes are mapped to HTTP statuses in [`error`] only. Access control is behind the
//! [`auth::Authorizer`] seam.

pub mod auth;
pub mod config;
pub mod conn;
mod drain;
mod duration;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod routes;
pub mod server;
pub mod services;
pub mod storage;
pub mod throttle;

pub use config::{Config, ConfigError};
pub use routes::{AppState, router};
pub use server::{ServeError, app_state, serve, serve_on, shutdown_signal};
pub use services::gc::{GcError, GcOptions, GcReport, gc};

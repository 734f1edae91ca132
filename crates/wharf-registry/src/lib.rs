//! wharf's OCI registry: an OCI Distribution Spec v1.1 server.
//!
//! A one-way stack, each layer importing only those below it (`tests/architecture.rs` holds the
//! table): [`server`] -> [`routes`] (HTTP, one catch-all `/v2/{*rest}` parsed by hand because
//! repository names contain `/`, one file per endpoint family) -> [`services`] (manifests,
//! blobs, uploads, tags, catalog, referrers, gc) -> [`error`] (every OCI error code and its HTTP
//! status) -> [`storage`] (a trait; filesystem and S3 implementations, opened by [`backend`]), [`config`] and [`auth`] (access
//! control behind the [`auth::Authorizer`] seam) -> [`limits`], [`metrics`] -> [`names`] (over
//! the `wharf-names` grammar the client shares).

pub mod auth;
pub mod backend;
pub mod body_pacing;
pub mod client_addr;
pub mod config;
pub mod conn;
mod drain;
mod duration;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod proxy_header;
pub mod routes;
pub mod server;
pub mod services;
pub mod storage;
pub mod throttle;

pub use backend::open_storage;
pub use config::{Config, ConfigError};
pub use routes::{AppState, router};
pub use server::{ServeError, app_state, serve, serve_on, shutdown_signal};
pub use services::gc::{GcError, GcOptions, GcReport, gc, gc_with_config};

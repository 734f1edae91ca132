//! Test-only helpers for wharf; never a dependency of shipped code.
//!
//! - [`Registry`]: a CNCF distribution 2.8 (`/usr/bin/docker-registry`, Debian package
//!   docker-registry) child process on a free `127.0.0.1` port with temporary storage, open,
//!   with htpasswd (Basic) auth, or with Docker token auth. Distribution ships no token
//!   server, so token auth is served by a hand-rolled in-process one (a thread running an
//!   HTTP server on `127.0.0.1`) that signs ES256 JWTs with a key generated at start; its
//!   self-signed certificate is the registry's `rootcertbundle` and the JWT `kid` is the
//!   libtrust key id distribution resolves against it.
//! - [`build_busybox_image`]: a reproducible single-layer OCI image layout built from
//!   busybox-static, pushed with `skopeo` ([`OciLayout::push`]) or loaded into Docker.
//! - [`architecture`]: the import-layer and cycle checker behind each crate's
//!   `tests/architecture.rs`.
//! - [`http`]: a minimal loopback-only HTTP client for probing the registry.
//!
//! Everything is synchronous and listens on, or talks to, 127.0.0.1 only.

pub mod architecture;
mod error;
pub mod http;
mod image;
mod registry;
mod token;

pub use error::Error;
pub use image::{BUSYBOX, LAYOUT_TAG, OciLayout, build_busybox_image, inspect_raw, npm_stand_in};
pub use registry::{AuthKind, BASIC_REALM, READY_TIMEOUT, REGISTRY_BIN, Registry, free_port};
pub use token::{Access, EXPIRES_IN, ISSUER, SERVICE, TokenRequestLog};

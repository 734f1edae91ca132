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
//! - [`http`]: a minimal loopback-only HTTP client for probing the registry.
//! - [`gitlab`]: a stand-in GitLab (files, projects, tags, releases and templates APIs, raw
//!   URLs, `git http-backend`) over TLS on loopback, for include-fetching tests.
//! - [`rgw`]: Ceph's RADOS gateway (a real S3) on a single-node memstore cluster on loopback;
//!   [`moto`]: moto's S3 server, a second implementation; both give an [`S3Server`].
//! - [`layers`]: a crate's modules checked as a one-way stack (its `tests/architecture.rs`).
//! - [`Tmpfs`]: a small tmpfs of a test's own, to fill up (root only).
//!
//! Everything is synchronous and listens on, or talks to, 127.0.0.1 only.

mod error;
pub mod gitlab;
pub mod http;
mod image;
pub mod layers;
pub mod moto;
mod registry;
pub mod rgw;
mod s3_server;
mod tmpfs;
mod token;

pub use error::Error;
pub use image::{
    BUSYBOX, LAYOUT_TAG, OciLayout, build_busybox_image, build_busybox_image_with_config,
    inspect_raw, npm_stand_in,
};
pub use registry::{
    AuthKind, BASIC_REALM, READY_TIMEOUT, REGISTRY_BIN, Registry, S3Bucket, free_port,
};
pub use s3_server::{REGION, S3Server, process_tempdir, wait_listening};
pub use tmpfs::Tmpfs;
pub use token::{Access, EXPIRES_IN, ISSUER, SERVICE, TokenRequestLog};

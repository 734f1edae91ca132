//! End-to-end tests of the `wharf` binary.
//! - `shell`: the shell executor and everything around it; no daemon needed (fast tier).
//! - `includes`: includes from a stand-in GitLab on loopback (TLS; no daemon needed).
//! - `docker`: the Docker executor against a real dockerd, Debian's docker-registry (htpasswd and
//!   token auth) and skopeo. Marked `#[ignore]`; `scripts/test-all.sh` runs them with
//!   `--include-ignored` after starting what they need.
//! - `runner`: `wharf runner` against a GitLab coordinator we did not write (gitlab-runner-mock).
//! - `runner_fleet`: `wharf runner run` with a config file: limits, reload, unregister.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod containerd;
mod corpus;
mod docker;
mod docker_user;
mod doctor;
mod hostile;
mod images;
mod includes;
mod limits;
mod network_corpus;
mod nginx;
mod pipeline;
mod registry;
mod runner;
mod runner_artifacts;
mod runner_fleet;
mod sandbox;
mod sandbox_services;
mod services;
mod shell;
mod support;

//! wharf-image: wharf's own image store. Pulls images from registries with the credentials
//! wharf-oci resolves (GitLab's sources and rules), keeps blobs content-addressed, unpacks each
//! layer once into a folder keyed by its chain id (in the form kernel overlayfs stacks), and can
//! flatten an image into one tree. See ARCHITECTURE.md ("wharf-image") for the invariants.

pub mod client;
pub mod error;
pub mod flatten;
pub mod manifest;
pub mod pull;
pub mod store;
pub mod unpack;
pub mod zstd_frames;

pub use error::ImageError;
pub use manifest::Platform;
pub use pull::{PullEvent, PullOptions, PullPolicy, pull, record_key};
pub use store::{ImageRecord, LayerRecord, PruneReport, Store};
pub use unpack::LayerReport;

/// Whether this process may set owners and create device nodes (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

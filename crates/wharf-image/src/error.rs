//! Errors of pulling, storing and unpacking images. Each names the image, registry, blob or path
//! involved and says what to do; none contains a secret.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] wharf_oci::ReferenceError),
    /// The registry could not be reached or the connection broke (worth retrying).
    #[error("Failed to pull image {image}: cannot reach registry {registry}: {detail}")]
    Network {
        image: String,
        registry: String,
        detail: String,
    },
    /// Missing or refused credentials, worded as the Docker executor words them.
    #[error("{message}")]
    Credentials { message: String, hint: String },
    #[error("Failed to pull image {image}: not found on registry {registry}: {detail}")]
    NotFound {
        image: String,
        registry: String,
        detail: String,
    },
    #[error(
        "image {image} has a Docker schema 1 manifest, which wharf does not pull (Docker dropped \
         it too): re-push it with a current Docker, podman or skopeo"
    )]
    Schema1 { image: String },
    #[error("image {image} has no {wanted} variant (it has: {available})")]
    NoPlatform {
        image: String,
        wanted: String,
        available: String,
    },
    #[error("registry {registry} sent an unusable {what} for {image}: {detail}")]
    Protocol {
        image: String,
        registry: String,
        what: String,
        detail: String,
    },
    #[error(
        "{what} of {image} from {registry} does not match its digest: expected {expected}, got \
         {actual} (a broken proxy or a corrupt registry; nothing was stored)"
    )]
    DigestMismatch {
        image: String,
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "image {image} is not present locally and the pull policy is \"never\": pull it first \
         (`wharf pull {image}`) or allow pulling with `--pull-policy if-not-present`"
    )]
    NotPresent { image: String },
    #[error("no image {reference} in the store at {}", home.display())]
    UnknownImage { reference: String, home: PathBuf },
    #[error("layer {digest} of {image}: {detail}")]
    Layer {
        image: String,
        digest: String,
        detail: String,
    },
    #[error("image store {}: {action}: {source}", path.display())]
    Store {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] wharf_fs::Error),
}

impl ImageError {
    /// A network failure (worth another attempt).
    pub fn is_network(&self) -> bool {
        matches!(self, ImageError::Network { .. })
    }

    /// What to do about it, when the message alone does not say.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ImageError::Credentials { hint, .. } if !hint.is_empty() => Some(hint),
            ImageError::NotFound { .. } => Some("check the image name and tag"),
            ImageError::Network { .. } => {
                Some("check that the registry is up and reachable from this machine")
            }
            _ => None,
        }
    }
}

pub(crate) fn store_err(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Store {
        path,
        action,
        source,
    }
}

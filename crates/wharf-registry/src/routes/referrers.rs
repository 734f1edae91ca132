//! `GET /v2/<name>/referrers/<digest>`: the manifests whose `subject` is the digest, as an OCI
//! image index, optionally filtered by `artifactType`.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method};

use super::call::Call;
use super::reply::Json;
use crate::auth::Action;
use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::manifests::{Descriptor, OCI_INDEX};

const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

pub(super) async fn list(
    call: &mut Call<'_>,
    repo: &RepoName,
    digest: &str,
) -> Result<Response, RegistryError> {
    call.authorize_repo(repo, &[Action::Pull]).await?;
    if *call.method() != Method::GET {
        return Err(call.method_not_allowed());
    }
    let digest = Digest::parse(digest)?;
    let artifact_type = call.query("artifactType");
    let manifests = call
        .registry()
        .referrers(repo, &digest, artifact_type)
        .await?;
    Ok(ReferrersIndex {
        manifests,
        filtered: artifact_type.is_some(),
    }
    .into_response())
}

/// The referrers as an image index; `filtered` says an `artifactType` filter was applied.
struct ReferrersIndex {
    manifests: Vec<Descriptor>,
    filtered: bool,
}

impl IntoResponse for ReferrersIndex {
    fn into_response(self) -> Response {
        let mut r = Json {
            content_type: OCI_INDEX,
            value: serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": self.manifests,
            }),
        }
        .into_response();
        if self.filtered {
            r.headers_mut().insert(
                OCI_FILTERS_APPLIED,
                HeaderValue::from_static("artifactType"),
            );
        }
        r
    }
}

//! `GET /v2/_catalog`: every repository name, paginated; needs `registry:catalog:*`.

use axum::response::Response;
use http::Method;

use super::call::Call;
use super::reply::Pagination;
use crate::auth::{Access, Action, ResourceKind};
use crate::error::RegistryError;

pub(super) async fn list(call: &mut Call<'_>) -> Result<Response, RegistryError> {
    call.authorize(&[Access {
        kind: ResourceKind::Registry,
        name: "catalog".to_string(),
        actions: vec![Action::All],
    }])
    .await?;
    if *call.method() != Method::GET {
        return Err(call.method_not_allowed());
    }
    let pagination = Pagination::of(call)?;
    let repositories = call.registry().catalog().await?;
    Ok(pagination.reply(
        repositories,
        "/v2/_catalog",
        "repositories",
        serde_json::Map::new(),
    ))
}

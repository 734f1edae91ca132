//! `GET /v2/<name>/tags/list`: a repository's tags, paginated.

use axum::response::Response;
use http::Method;

use super::call::Call;
use super::reply::Pagination;
use crate::auth::Action;
use crate::error::RegistryError;
use crate::names::RepoName;

pub(super) async fn list(call: &mut Call<'_>, repo: &RepoName) -> Result<Response, RegistryError> {
    call.authorize_repo(repo, &[Action::Pull]).await?;
    if *call.method() != Method::GET {
        return Err(call.method_not_allowed());
    }
    let pagination = Pagination::of(call)?;
    let tags = match call.state.proxy.target(repo) {
        Some(target) => {
            call.state
                .proxy
                .tags(call.registry(), repo, &target)
                .await?
        }
        None => call.registry().tags(repo).await?,
    };
    let mut document = serde_json::Map::new();
    document.insert("name".to_string(), serde_json::json!(repo.as_str()));
    Ok(pagination.reply(tags, &format!("/v2/{repo}/tags/list"), "tags", document))
}

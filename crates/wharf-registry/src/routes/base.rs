//! `GET /v2/`: the version check. Answers `{}` to anyone the authorizer lets in, so clients learn
//! whether, and how, to authenticate.

use axum::response::{IntoResponse, Response};
use http::Method;

use super::call::Call;
use super::reply::Json;
use crate::error::RegistryError;

pub(super) async fn ping(call: &mut Call<'_>) -> Result<Response, RegistryError> {
    call.authorize(&[]).await?;
    match *call.method() {
        Method::GET | Method::HEAD => Ok(Json {
            content_type: "application/json",
            value: serde_json::json!({}),
        }
        .into_response()),
        _ => Err(call.method_not_allowed()),
    }
}

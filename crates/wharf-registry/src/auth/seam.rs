//! The seam between the HTTP layer and access control: what a request wants ([`Access`]), who
//! made it ([`Identity`]), the verdict ([`AuthOutcome`]) and the [`Authorizer`] that gives it.
//! The routes and every implementation code against these names; they import nothing else.

use std::future::Future;
use std::pin::Pin;

/// The kind of resource a scope names (`repository:...` or `registry:catalog:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Repository,
    Registry,
}

/// An action in a Docker token scope. `All` is the `*` action (`registry:catalog:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    All,
}

/// What a request wants, in Docker token-scope terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kind: ResourceKind,
    /// Repository name (`team/app`), or `catalog` for [`ResourceKind::Registry`].
    pub name: String,
    pub actions: Vec<Action>,
}

/// Who made the request, once authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `None` for an anonymous request.
    pub subject: Option<String>,
}

/// Which OCI error code a refusal is reported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorCode {
    /// 401 `UNAUTHORIZED`: no or bad credentials, or a token without the needed scope.
    Unauthorized,
    /// 403 `DENIED`: authenticated, but policy refuses.
    Denied,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed(Identity),
    /// Refused: answer with the OCI error `error`, carrying this `WWW-Authenticate` header value
    /// (may be empty for `Denied`, in which case no header is sent).
    Challenge {
        www_authenticate: String,
        error: AuthErrorCode,
        /// Why, for the client: the error's `detail` (the message stays the one every registry
        /// sends, which clients may match). Names what was missing and the scope the request
        /// needs; never a credential. Empty for no detail.
        why: String,
    },
}

/// Decides whether a request may have every [`Access`] in `wanted`. An empty `wanted` (the `/v2/`
/// ping) still requires authentication.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        wanted: &'a [Access],
    ) -> Pin<Box<dyn Future<Output = AuthOutcome> + Send + 'a>>;
}

/// `--auth none`: everyone may do everything, as an anonymous identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize<'a>(
        &'a self,
        _headers: &'a http::HeaderMap,
        _wanted: &'a [Access],
    ) -> Pin<Box<dyn Future<Output = AuthOutcome> + Send + 'a>> {
        Box::pin(std::future::ready(
            AuthOutcome::Allowed(Identity::default()),
        ))
    }
}

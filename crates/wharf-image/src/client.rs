//! The registry client for pulls: manifests and blobs over the distribution API, with the
//! credentials wharf-oci resolved. Authentication is lazy, as Docker's: a request goes out
//! anonymous; a 401 names the scheme (`Basic`, or `Bearer` with a token server), and the request
//! is sent again with credentials. A Bearer token is refreshed when a later request gets a 401.

use std::time::Duration;

use tokio::sync::Mutex;
use wharf_oci::{Challenge, ImageRef, RegistryAuth, Secret};

use crate::error::ImageError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of a blob: a stalled connection is a network error (and resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How requests are authorised, once the registry said.
#[derive(Clone)]
enum Authorization {
    None,
    Basic { user: String, password: String },
    Bearer(Secret),
}

/// The HTTP client registry requests go through: connect and read timeouts, wharf's user agent,
/// and invalid TLS certificates accepted only when `insecure`.
pub fn http_client(insecure: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(insecure)
        .build()
}

/// A connection to one repository of one registry.
pub struct RegistryClient {
    http: reqwest::Client,
    /// The image as the user named it, for messages.
    image: String,
    reference: ImageRef,
    /// `https://host[:port]` or `http://host[:port]`, once known.
    base: Mutex<Option<String>>,
    endpoint: wharf_oci::Endpoint,
    auth: Option<RegistryAuth>,
    resolution: wharf_oci::Resolution,
    authorization: Mutex<Authorization>,
    insecure: bool,
}

/// A successful response, with the URL it came from (for messages).
pub struct Fetch {
    pub response: reqwest::Response,
    pub url: String,
}

impl RegistryClient {
    /// `resolution` is what wharf-oci found for `reference` (explains refusals);
    /// `preferred_base` a base URL that worked before (skips the https attempt on a
    /// plain-http registry).
    pub fn new(
        image: &str,
        reference: ImageRef,
        resolution: wharf_oci::Resolution,
        insecure: bool,
        preferred_base: Option<String>,
    ) -> Result<RegistryClient, ImageError> {
        let http = http_client(insecure).map_err(|e| ImageError::Network {
            image: image.to_owned(),
            registry: reference.registry.clone(),
            detail: wharf_oci::describe_http_error(&e),
        })?;
        Self::with_http(http, image, reference, resolution, insecure, preferred_base)
    }

    /// [`RegistryClient::new`] over an HTTP client made by [`http_client`] once and shared
    /// (its connection pool too) by the clients of many repositories: what a registry cache
    /// holds, where building a client (loading the TLS roots) per repository would add to a
    /// first pull.
    pub fn with_http(
        http: reqwest::Client,
        image: &str,
        reference: ImageRef,
        resolution: wharf_oci::Resolution,
        insecure: bool,
        preferred_base: Option<String>,
    ) -> Result<RegistryClient, ImageError> {
        let endpoint = wharf_oci::endpoint(&reference.registry, insecure).map_err(|e| {
            ImageError::Protocol {
                image: image.to_owned(),
                registry: reference.registry.clone(),
                what: "address".into(),
                detail: e.to_string(),
            }
        })?;
        let preferred_base = preferred_base.filter(|b| {
            b == &format!("https://{}", endpoint.host)
                || (endpoint.allow_http && b == &format!("http://{}", endpoint.host))
        });
        Ok(RegistryClient {
            http,
            image: image.to_owned(),
            auth: resolution.found.as_ref().map(|f| f.auth.clone()),
            resolution,
            reference,
            base: Mutex::new(preferred_base),
            endpoint,
            authorization: Mutex::new(Authorization::None),
            insecure,
        })
    }

    /// The base URL requests went to (once one succeeded).
    pub async fn base(&self) -> Option<String> {
        self.base.lock().await.clone()
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn registry(&self) -> &str {
        &self.reference.registry
    }

    fn network(&self, detail: String) -> ImageError {
        ImageError::Network {
            image: self.image.clone(),
            registry: self.reference.registry.clone(),
            detail,
        }
    }

    /// `GET /v2/<repository>/<path>` with `headers`, authenticating when asked to.
    pub async fn get(&self, path: &str, headers: &[(&str, String)]) -> Result<Fetch, ImageError> {
        self.request(reqwest::Method::GET, path, headers).await
    }

    /// `HEAD /v2/<repository>/<path>`: what a GET would answer, without the body (a registry
    /// cache checks whether a tag moved this way).
    pub async fn head(&self, path: &str, headers: &[(&str, String)]) -> Result<Fetch, ImageError> {
        self.request(reqwest::Method::HEAD, path, headers).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<Fetch, ImageError> {
        let base = self.base_url().await?;
        let url = format!("{base}/v2/{}/{path}", self.reference.repository);
        let mut refreshed = false;
        loop {
            let authorization = self.authorization.lock().await.clone();
            let mut request = self.http.request(method.clone(), &url);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request = match &authorization {
                Authorization::None => request,
                Authorization::Basic { user, password } => request.basic_auth(user, Some(password)),
                Authorization::Bearer(token) => request.bearer_auth(&token.0),
            };
            let response = request.send().await.map_err(|e| {
                self.network(format!("{url}: {}", wharf_oci::describe_http_error(&e)))
            })?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(Fetch { response, url }),
                401 if !refreshed => {
                    // First 401, or an expired token: (re)authenticate once.
                    refreshed = true;
                    let challenges: Vec<Challenge> = response
                        .headers()
                        .get_all(reqwest::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(wharf_oci::parse_www_authenticate)
                        .collect();
                    let next = self.authorize(&url, &challenges).await?;
                    *self.authorization.lock().await = next;
                }
                401 | 403 => {
                    let detail = format!("HTTP {status}{}", registry_message(response).await);
                    return Err(self.refused(&detail));
                }
                404 => {
                    let detail = format!("{url}: HTTP 404{}", registry_message(response).await);
                    return Err(ImageError::NotFound {
                        image: self.image.clone(),
                        registry: self.reference.registry.clone(),
                        detail,
                    });
                }
                500..=599 | 429 => {
                    let detail =
                        format!("{url}: HTTP {status}{}", registry_message(response).await);
                    return Err(self.network(detail));
                }
                _ => {
                    let detail = format!("HTTP {status}{}", registry_message(response).await);
                    return Err(ImageError::Protocol {
                        image: self.image.clone(),
                        registry: self.reference.registry.clone(),
                        what: format!("answer to {url}"),
                        detail,
                    });
                }
            }
        }
    }

    /// The credentials explanation for a refusal, as the Docker executor gives it.
    fn refused(&self, detail: &str) -> ImageError {
        let (message, hint) = self
            .resolution
            .explain_refusal(&self.image, &self.reference, detail);
        ImageError::Credentials { message, hint }
    }

    /// How to authorise the next requests, from the registry's challenges.
    async fn authorize(
        &self,
        url: &str,
        challenges: &[Challenge],
    ) -> Result<Authorization, ImageError> {
        let find = |scheme: &str| {
            challenges
                .iter()
                .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
        };
        if let Some(bearer) = find("Bearer") {
            let scope = bearer
                .param("scope")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
            let token = wharf_oci::bearer_token(
                &self.http,
                url,
                bearer,
                &scope,
                self.auth.as_ref(),
                self.insecure,
            )
            .await
            .map_err(|e| match e {
                wharf_oci::LoginError::Unauthorized { detail, .. } => self.refused(&detail),
                wharf_oci::LoginError::Connect { url, detail, .. } => {
                    self.network(format!("token server {url}: {detail}"))
                }
                other => ImageError::Protocol {
                    image: self.image.clone(),
                    registry: self.reference.registry.clone(),
                    what: "authentication challenge".into(),
                    detail: other.to_string(),
                },
            })?;
            return Ok(Authorization::Bearer(token));
        }
        if find("Basic").is_some() {
            let user = self.auth.as_ref().and_then(|a| a.username.clone());
            return match user {
                Some(user) if !user.is_empty() => Ok(Authorization::Basic {
                    password: self
                        .auth
                        .as_ref()
                        .and_then(|a| a.password.clone())
                        .unwrap_or_default(),
                    user,
                }),
                _ => Err(self.refused("HTTP 401, Basic authentication required")),
            };
        }
        Err(self.refused("HTTP 401 without a usable WWW-Authenticate challenge"))
    }

    /// The base URL: https first, plain http where allowed (loopback or insecure) when https
    /// cannot connect.
    async fn base_url(&self) -> Result<String, ImageError> {
        let mut base = self.base.lock().await;
        if let Some(b) = base.as_ref() {
            return Ok(b.clone());
        }
        let https = format!("https://{}", self.endpoint.host);
        let http = format!("http://{}", self.endpoint.host);
        let chosen = if !self.endpoint.try_https {
            http
        } else {
            match self.http.get(format!("{https}/v2/")).send().await {
                Ok(_) => https,
                Err(e) if self.endpoint.allow_http => {
                    match self.http.get(format!("{http}/v2/")).send().await {
                        Ok(_) => http,
                        Err(e2) => {
                            return Err(self.network(format!(
                                "{https}: {}; over plain http: {}",
                                wharf_oci::describe_http_error(&e),
                                wharf_oci::describe_http_error(&e2)
                            )));
                        }
                    }
                }
                Err(e) => {
                    return Err(self.network(format!(
                        "{https}: {} (for a plain-http registry on another host pass --insecure)",
                        wharf_oci::describe_http_error(&e)
                    )));
                }
            }
        };
        *base = Some(chosen.clone());
        Ok(chosen)
    }
}

/// The registry's own error message (`{"errors":[{"message":..}]}`), shortened, as `: <msg>`.
async fn registry_message(response: reqwest::Response) -> String {
    let body = wharf_oci::text_of(response).await;
    wharf_oci::login::server_message(&body, "")
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

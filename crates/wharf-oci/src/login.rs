//! The registry login client: what `docker login` does on the wire.
//!
//! `GET /v2/` (https first; plain http only for loopback registries or when `insecure`):
//! - 200: the registry needs no credentials (the login still succeeds, as with Docker);
//! - 401 `Basic`: `GET /v2/` again with HTTP Basic; 200 = valid, 401 = rejected;
//! - 401 `Bearer realm=..,service=..`: `GET <realm>?service=..&offline_token=true&client_id=wharf`
//!   with HTTP Basic; 200 with `token`/`access_token` = valid (a `refresh_token` becomes the
//!   identity token to store), 401/403 = rejected.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::Secret;
use crate::authconfig::DOCKER_HUB_KEY;

/// Docker Hub's registry API endpoint (the registry `docker.io` is served from here).
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const CLIENT_ID: &str = "wharf";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to log in to and with what. Debug never shows the password.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// `host[:port]`, optionally with `https://`/`http://`; `docker.io` for Docker Hub.
    pub registry: String,
    pub username: String,
    pub password: Secret,
    /// Allow plain http and unverified TLS certificates for a non-loopback registry.
    pub insecure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// HTTP Basic on every request. Also reported when the registry asked for no credentials at
    /// all (`docker login` stores them the same way then).
    Basic,
    /// Token authentication through the registry's token server.
    Bearer,
}

/// A successful login. Debug never shows the password or token.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The config.json key: `host[:port]`, or `https://index.docker.io/v1/` for Docker Hub.
    pub key: String,
    pub scheme: AuthScheme,
    /// Refresh token from the token server (stored as `identitytoken`), if it gave one.
    pub identity_token: Option<Secret>,
    pub username: String,
    pub password: Secret,
}

/// Login failures. Messages name the registry URL and what to do; never the password.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid registry `{registry}`: {reason}")]
    InvalidRegistry { registry: String, reason: String },
    #[error("cannot set up the HTTP client: {detail}")]
    Client { detail: String },
    #[error("cannot reach the registry at {url}: {detail}. Check the host name and port{hint}")]
    Connect {
        url: String,
        detail: String,
        hint: String,
    },
    #[error(
        "{registry} rejected the username or password ({detail}). Check both; a registry that \
         uses tokens (GitLab, GitHub, Docker Hub with 2FA) needs an access token with read \
         access to the registry as the password"
    )]
    Unauthorized { registry: String, detail: String },
    #[error(
        "{url} is not a container registry API (HTTP {status} for /v2/). Give the registry host, \
         e.g. `registry.example.com:5000`, not a web UI address"
    )]
    NotARegistry { url: String, status: u16 },
    #[error("unexpected HTTP {status} from {url}{detail}")]
    UnexpectedStatus {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} asked for authentication without a usable challenge: {detail}")]
    BadChallenge { url: String, detail: String },
    #[error(
        "the registry sends credentials to the token server {realm} over plain http; refusing. \
         Pass --insecure only if you trust this network"
    )]
    InsecureRealm { realm: String },
    #[error("the token server {url} sent an unusable response: {detail}")]
    TokenResponse { url: String, detail: String },
}

/// One challenge of a `WWW-Authenticate` header: `Bearer realm="...",service="..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As sent (compare case-insensitively).
    pub scheme: String,
    /// Parameter names lowercased, values unquoted; a token68 has the name "".
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `WWW-Authenticate` (RFC 7235): several challenges, comma-separated parameters, quoted
/// strings that may contain commas and `\"` escapes. Lenient about unquoted values (some servers
/// send `realm=https://...` bare).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    let word = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        &header[start..*i]
    };
    loop {
        skip(&mut i, b" \t,");
        let scheme = word(&mut i);
        if scheme.is_empty() {
            // Not a token (stray quote, `=`, any other character): skip it and resynchronise.
            // A whole character: a header is ASCII once `to_str` accepted it, but this takes
            // any text, and a byte inside a character would be no place to slice at.
            let Some(c) = header[i..].chars().next() else {
                break;
            };
            i += c.len_utf8();
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_owned(),
            params: Vec::new(),
        };
        loop {
            let restart = i;
            skip(&mut i, b" \t");
            let name_start = i;
            let name = word(&mut i);
            skip(&mut i, b" \t");
            if name.is_empty() || i >= b.len() || b[i] != b'=' {
                // Not `name=`: the start of the next challenge (or the end).
                i = restart;
                break;
            }
            i += 1;
            // token68 (`Basic abc==`): the `=` run is padding, not a separator.
            if i >= b.len() || b[i] == b'=' || b[i] == b',' {
                skip(&mut i, b"=");
                challenge
                    .params
                    .push((String::new(), header[name_start..i].to_owned()));
                break;
            }
            skip(&mut i, b" \t");
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut value = String::new();
                let mut chars = header[i..].char_indices();
                let mut end = header.len();
                while let Some((offset, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = i + offset + 1;
                            break;
                        }
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(next);
                            }
                        }
                        c => value.push(c),
                    }
                }
                i = end;
                value
            } else {
                let start = i;
                while i < b.len() && !b" \t,".contains(&b[i]) {
                    i += 1;
                }
                header[start..i].to_owned()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            skip(&mut i, b" \t");
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            break;
        }
        out.push(challenge);
    }
    out
}

/// The registry to talk to, derived from the user's input.
#[derive(Debug)]
struct Target {
    /// `host[:port]` as shown in messages.
    display: String,
    /// `host[:port]` requests go to.
    endpoint: String,
    key: String,
    try_https: bool,
    allow_http: bool,
}

impl Target {
    fn parse(input: &str, insecure: bool) -> Result<Self, LoginError> {
        let invalid = |reason: &str| LoginError::InvalidRegistry {
            registry: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (explicit_http, rest) = if let Some(rest) = lower.strip_prefix("https://") {
            (false, rest)
        } else if let Some(rest) = lower.strip_prefix("http://") {
            (true, rest)
        } else {
            (false, lower.as_str())
        };
        // `docker login host/path` logs in to the host; the path is not part of the key.
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid(
                "no host name (expected e.g. `registry.example.com:5000`)",
            ));
        }
        if host.contains('@') || host.contains(char::is_whitespace) {
            return Err(invalid(
                "expected `host[:port]` without credentials or spaces",
            ));
        }
        let url = url::Url::parse(&format!("https://{host}/"))
            .map_err(|e| invalid(&format!("not a valid host[:port] ({e})")))?;
        let bare_host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let loopback = bare_host == "localhost"
            || bare_host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let allow_http = loopback || insecure;
        if explicit_http && !allow_http {
            return Err(invalid(
                "plain http is only used for loopback registries or with --insecure (credentials \
                 would cross the network unencrypted)",
            ));
        }
        let hub = matches!(host, "docker.io" | "index.docker.io" | DOCKER_HUB_ENDPOINT);
        Ok(Target {
            display: if hub {
                "docker.io".into()
            } else {
                host.to_owned()
            },
            endpoint: if hub {
                DOCKER_HUB_ENDPOINT.into()
            } else {
                host.to_owned()
            },
            key: if hub {
                DOCKER_HUB_KEY.into()
            } else {
                host.to_owned()
            },
            try_https: !explicit_http,
            allow_http,
        })
    }
}

/// Log in to a registry: check the credentials the way `docker login` does.
pub async fn login(req: &LoginRequest) -> Result<LoginOutcome, LoginError> {
    let target = Target::parse(&req.registry, req.insecure)?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(req.insecure)
        .build()
        .map_err(|e| LoginError::Client {
            detail: error_chain(&e),
        })?;
    let (ping_url, response) = ping(&client, &target).await?;
    let outcome = |scheme, identity_token| LoginOutcome {
        key: target.key.clone(),
        scheme,
        identity_token,
        username: req.username.clone(),
        password: req.password.clone(),
    };
    match response.status().as_u16() {
        200..=299 => return Ok(outcome(AuthScheme::Basic, None)),
        401 => {}
        404 => {
            return Err(LoginError::NotARegistry {
                url: ping_url,
                status: 404,
            });
        }
        status => {
            return Err(LoginError::UnexpectedStatus {
                url: ping_url,
                status,
                detail: String::new(),
            });
        }
    }
    let challenges: Vec<Challenge> = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect();
    let find = |scheme: &str| {
        challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
    };
    if let Some(bearer) = find("Bearer") {
        let token = fetch_token(&client, &target, &ping_url, bearer, req).await?;
        return Ok(outcome(AuthScheme::Bearer, token));
    }
    if find("Basic").is_some() {
        let response = client
            .get(&ping_url)
            .basic_auth(&req.username, Some(&req.password.0))
            .send()
            .await
            .map_err(|e| connect_error(&ping_url, &e, &target))?;
        return match response.status().as_u16() {
            200..=299 => Ok(outcome(AuthScheme::Basic, None)),
            401 | 403 => Err(LoginError::Unauthorized {
                registry: target.display.clone(),
                detail: format!("HTTP {} from {ping_url}", response.status().as_u16()),
            }),
            status => Err(LoginError::UnexpectedStatus {
                url: ping_url,
                status,
                detail: String::new(),
            }),
        };
    }
    let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
    Err(LoginError::BadChallenge {
        url: ping_url,
        detail: if schemes.is_empty() {
            "HTTP 401 without a WWW-Authenticate header".into()
        } else {
            format!(
                "unsupported scheme(s) {} (wharf supports Basic and Bearer)",
                schemes.join(", ")
            )
        },
    })
}

/// `GET /v2/`, https first, then plain http where that is allowed.
async fn ping(
    client: &reqwest::Client,
    target: &Target,
) -> Result<(String, reqwest::Response), LoginError> {
    let https = format!("https://{}/v2/", target.endpoint);
    let http = format!("http://{}/v2/", target.endpoint);
    if !target.try_https {
        let response = client
            .get(&http)
            .send()
            .await
            .map_err(|e| connect_error(&http, &e, target))?;
        return Ok((http, response));
    }
    match client.get(&https).send().await {
        Ok(response) => Ok((https, response)),
        Err(https_err) if target.allow_http => match client.get(&http).send().await {
            Ok(response) => Ok((http, response)),
            Err(http_err) => Err(LoginError::Connect {
                url: https.clone(),
                detail: format!(
                    "{}; over plain http: {}",
                    error_chain(&https_err),
                    error_chain(&http_err)
                ),
                hint: String::new(),
            }),
        },
        Err(e) => Err(connect_error(&https, &e, target)),
    }
}

fn connect_error(url: &str, e: &reqwest::Error, target: &Target) -> LoginError {
    let hint = if target.allow_http {
        String::new()
    } else {
        "; for a plain-http registry on another host pass --insecure".to_owned()
    };
    LoginError::Connect {
        url: url.to_owned(),
        detail: error_chain(e),
        hint,
    }
}

/// Ask the token server, as `docker login` does, whether the credentials are good.
async fn fetch_token(
    client: &reqwest::Client,
    target: &Target,
    ping_url: &str,
    challenge: &Challenge,
    req: &LoginRequest,
) -> Result<Option<Secret>, LoginError> {
    let mut url = token_realm(challenge, ping_url, req.insecure)?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        query.append_pair("offline_token", "true");
        query.append_pair("client_id", CLIENT_ID);
    }
    let token_url = url.to_string();
    let response = client
        .get(url)
        .basic_auth(&req.username, Some(&req.password.0))
        .send()
        .await
        .map_err(|e| connect_error(&token_url, &e, target))?;
    let status = response.status().as_u16();
    let body = text_of(response).await;
    match status {
        200..=299 => {}
        401 | 403 => {
            let mut detail = format!("HTTP {status} from the token server {token_url}");
            if let Some(message) = server_message(&body, &req.password.0) {
                detail.push_str(&format!(": {message}"));
            }
            return Err(LoginError::Unauthorized {
                registry: target.display.clone(),
                detail,
            });
        }
        _ => {
            return Err(LoginError::UnexpectedStatus {
                url: token_url,
                status,
                detail: server_message(&body, &req.password.0)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            });
        }
    }
    let parsed = TokenResponse::parse(&body, &token_url)?;
    parsed.token(&token_url)?;
    Ok(parsed.refresh_token.filter(|t| !t.is_empty()).map(Secret))
}

/// A token server's answer (distribution's token spec: `token` or its OAuth2 alias
/// `access_token`, and a `refresh_token` when one was asked for).
#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

impl TokenResponse {
    fn parse(body: &str, token_url: &str) -> Result<Self, LoginError> {
        serde_json::from_str(body).map_err(|e| LoginError::TokenResponse {
            url: token_url.to_owned(),
            detail: format!(
                "not the expected JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        })
    }

    /// The token: `token`, else `access_token` (an empty one counts as missing).
    fn token(&self, token_url: &str) -> Result<Secret, LoginError> {
        [&self.token, &self.access_token]
            .into_iter()
            .flatten()
            .find(|t| !t.is_empty())
            .cloned()
            .map(Secret)
            .ok_or_else(|| LoginError::TokenResponse {
                url: token_url.to_owned(),
                detail: "no `token` or `access_token` in it".into(),
            })
    }
}

/// The token server URL of a Bearer challenge, checked: https, or plain http only to a loopback
/// host or when `insecure` (credentials go there).
fn token_realm(
    challenge: &Challenge,
    ping_url: &str,
    insecure: bool,
) -> Result<url::Url, LoginError> {
    let realm = challenge
        .param("realm")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| LoginError::BadChallenge {
            url: ping_url.to_owned(),
            detail: "Bearer challenge without a realm".into(),
        })?;
    let url = url::Url::parse(realm).map_err(|e| LoginError::BadChallenge {
        url: ping_url.to_owned(),
        detail: format!("token realm `{realm}` is not a URL ({e})"),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback && !insecure {
                return Err(LoginError::InsecureRealm {
                    realm: realm.to_owned(),
                });
            }
            Ok(url)
        }
        other => Err(LoginError::BadChallenge {
            url: ping_url.to_owned(),
            detail: format!("token realm uses unsupported scheme `{other}`"),
        }),
    }
}

/// Where requests for a registry go, as `docker pull` and `docker login` derive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as shown in messages (`docker.io` for Docker Hub).
    pub display: String,
    /// `host[:port]` requests go to (`registry-1.docker.io` for Docker Hub).
    pub host: String,
    /// Try https first (false only for an explicit `http://`).
    pub try_https: bool,
    /// Plain http is allowed (a loopback registry, or `insecure`).
    pub allow_http: bool,
}

/// The endpoint for `registry` (`host[:port]`, optionally with a scheme); see [`login`] for the
/// rules on plain http.
pub fn endpoint(registry: &str, insecure: bool) -> Result<Endpoint, LoginError> {
    let target = Target::parse(registry, insecure)?;
    Ok(Endpoint {
        display: target.display,
        host: target.endpoint,
        try_https: target.try_https,
        allow_http: target.allow_http,
    })
}

/// Get a bearer token for `scope` (e.g. `repository:team/app:pull`) from the token server of a
/// registry's `Bearer` challenge, as `docker pull` does: a stored `registrytoken` is used as is;
/// an `identitytoken` is exchanged with the OAuth2 refresh-token grant (POST); a username and
/// password go as HTTP Basic on a GET; no credentials ask for an anonymous token. Errors never
/// contain a secret.
pub async fn bearer_token(
    client: &reqwest::Client,
    ping_url: &str,
    challenge: &Challenge,
    scope: &str,
    auth: Option<&crate::RegistryAuth>,
    insecure: bool,
) -> Result<Secret, LoginError> {
    if let Some(token) = auth
        .and_then(|a| a.registry_token.as_ref())
        .filter(|t| !t.is_empty())
    {
        return Ok(Secret(token.clone()));
    }
    let mut url = token_realm(challenge, ping_url, insecure)?;
    let service = challenge.param("service").unwrap_or_default().to_owned();
    let display = url.host_str().unwrap_or_default().to_owned();
    let identity_token = auth
        .and_then(|a| a.identity_token.as_ref())
        .filter(|t| !t.is_empty());
    let secret: &str;
    let request = if let Some(refresh) = identity_token {
        secret = refresh;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", service.as_str()),
            ("scope", scope),
            ("client_id", CLIENT_ID),
        ];
        client.post(url.clone()).form(&form)
    } else {
        {
            let mut query = url.query_pairs_mut();
            if !service.is_empty() {
                query.append_pair("service", &service);
            }
            if !scope.is_empty() {
                query.append_pair("scope", scope);
            }
            query.append_pair("client_id", CLIENT_ID);
        }
        let request = client.get(url.clone());
        match auth.and_then(|a| a.username.as_ref().map(|u| (u, a.password.as_deref()))) {
            Some((user, password)) if !user.is_empty() => {
                secret = password.unwrap_or_default();
                request.basic_auth(user, password)
            }
            _ => {
                secret = "";
                request
            }
        }
    };
    let token_url = {
        let mut shown = url.clone();
        shown.set_query(None);
        shown.to_string()
    };
    let response = request.send().await.map_err(|e| LoginError::Connect {
        url: token_url.clone(),
        detail: error_chain(&e),
        hint: String::new(),
    })?;
    let status = response.status().as_u16();
    let body = text_of(response).await;
    match status {
        200..=299 => {}
        401 | 403 => {
            let mut detail = format!("HTTP {status} from the token server {token_url}");
            if let Some(message) = server_message(&body, secret) {
                detail.push_str(&format!(": {message}"));
            }
            return Err(LoginError::Unauthorized {
                registry: display,
                detail,
            });
        }
        _ => {
            return Err(LoginError::UnexpectedStatus {
                url: token_url,
                status,
                detail: server_message(&body, secret)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            });
        }
    }
    TokenResponse::parse(&body, &token_url)?.token(&token_url)
}

/// What an error answer's body is read up to: enough for any registry's or token server's
/// JSON message, and a server streaming an endless one costs no more.
pub const MAX_MESSAGE_BODY: usize = 1 << 20;

/// The body of `response` if it is at most `limit` bytes; `Ok(None)` as soon as it is longer,
/// without reading the rest (a registry decides how long its answers are).
pub async fn body_up_to(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The first [`MAX_MESSAGE_BODY`] bytes of an answer's body as text, for messages and small
/// JSON documents; what could not be read is left out.
pub async fn text_of(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_MESSAGE_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// reqwest's error with its causes (connection refused, certificate not trusted, ...), without
/// the URL (callers name it). No credentials are in any of it.
pub fn describe_http_error(e: &reqwest::Error) -> String {
    error_chain(e)
}

/// The registry's own error message (`{"errors": [{"message": ...}]}` or `{"details": ...}`),
/// shortened and with the password masked in case a server echoes it.
pub fn server_message(body: &str, password: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let message = value
        .get("errors")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("message"))
        .or_else(|| value.get("details"))
        .or_else(|| value.get("message"))
        .and_then(|m| m.as_str())?;
    let mut message = if password.is_empty() {
        message.to_owned()
    } else {
        message.replace(password, "[MASKED]")
    };
    if message.chars().count() > 200 {
        message = message.chars().take(200).collect::<String>() + "...";
    }
    Some(message)
}

/// reqwest's Display says only "error sending request for url (..)"; the cause chain says what
/// failed (connection refused, certificate not trusted, ...). The URL is named by the caller, so
/// the top level is dropped when there is a cause. No credentials are in any of it.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_www_authenticate() {
        type Expected<'a> = Vec<(&'a str, Vec<(&'a str, &'a str)>)>;
        let cases: Vec<(&str, Expected)> = vec![
            (
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com""#,
                vec![(
                    "Bearer",
                    vec![
                        ("realm", "https://auth.example.com/token"),
                        ("service", "registry.example.com"),
                    ],
                )],
            ),
            (
                r#"Bearer realm="https://a/t", service="s", scope="repository:a/b:pull,push""#,
                vec![(
                    "Bearer",
                    vec![
                        ("realm", "https://a/t"),
                        ("service", "s"),
                        ("scope", "repository:a/b:pull,push"),
                    ],
                )],
            ),
            (
                r#"Basic realm="Registry Realm""#,
                vec![("Basic", vec![("realm", "Registry Realm")])],
            ),
            (
                r#"basic Realm="a \"quoted\", realm", charset="UTF-8", Bearer realm="https://t",service=svc"#,
                vec![
                    (
                        "basic",
                        vec![("realm", "a \"quoted\", realm"), ("charset", "UTF-8")],
                    ),
                    ("Bearer", vec![("realm", "https://t"), ("service", "svc")]),
                ],
            ),
            ("Basic", vec![("Basic", vec![])]),
            (
                "Negotiate abc123==, Basic",
                vec![("Negotiate", vec![("", "abc123==")]), ("Basic", vec![])],
            ),
            (
                "Bearer realm=https://t/token?x=1,service=s",
                vec![(
                    "Bearer",
                    vec![("realm", "https://t/token?x=1"), ("service", "s")],
                )],
            ),
            ("", vec![]),
            // Found by fuzzing (fuzz/fuzz_targets/auth_config.rs): a character that is no
            // token, of more than one byte, made the parser slice inside it and panic.
            ("ѻ", vec![]),
            (
                "\"é Bearer realm=\"ü\"",
                vec![("Bearer", vec![("realm", "ü")])],
            ),
            (
                r#"Bearer realm="unterminated"#,
                vec![("Bearer", vec![("realm", "unterminated")])],
            ),
        ];
        for (header, want) in cases {
            let got = parse_www_authenticate(header);
            let got: Expected = got
                .iter()
                .map(|c| {
                    (
                        c.scheme.as_str(),
                        c.params
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_str()))
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{header}");
        }
    }

    #[test]
    fn targets() {
        let t = Target::parse("docker.io", false).expect("ok");
        assert_eq!(
            (t.key.as_str(), t.endpoint.as_str()),
            (DOCKER_HUB_KEY, DOCKER_HUB_ENDPOINT)
        );
        let t = Target::parse("https://index.docker.io/v1/", false).expect("ok");
        assert_eq!(t.key, DOCKER_HUB_KEY);
        let t = Target::parse("R.Example.com:5000", false).expect("ok");
        assert_eq!(t.key, "r.example.com:5000");
        assert!(!t.allow_http);
        assert!(
            Target::parse("127.0.0.1:5000", false)
                .expect("ok")
                .allow_http
        );
        assert!(
            Target::parse("localhost:5000", false)
                .expect("ok")
                .allow_http
        );
        assert!(Target::parse("[::1]:5000", false).expect("ok").allow_http);
        assert!(Target::parse("r.example.com", true).expect("ok").allow_http);
        assert!(Target::parse("http://r.example.com", false).is_err());
        assert!(Target::parse("", false).is_err());
        assert!(Target::parse("user:pw@r.example.com", false).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let req = LoginRequest {
            registry: "r.io".into(),
            username: "u".into(),
            password: Secret("hunter2".into()),
            insecure: false,
        };
        assert!(!format!("{req:?}").contains("hunter2"));
        let out = LoginOutcome {
            key: "r.io".into(),
            scheme: AuthScheme::Bearer,
            identity_token: Some(Secret("refreshtok".into())),
            username: "u".into(),
            password: Secret("hunter2".into()),
        };
        let dbg = format!("{out:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("refreshtok"),
            "{dbg}"
        );
    }
}

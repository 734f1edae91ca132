//! One upstream registry of a pull-through cache: its clients (wharf-image's registry client,
//! the one `wharf pull` uses, one per upstream repository so a Bearer token's scope fits), its
//! credentials resolved with wharf-oci's rules, and its failures worded for the cache's clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use wharf_image::ImageError;
use wharf_image::client::{Fetch, RegistryClient};

use crate::config::ProxyConfig;

/// Why the upstream gave nothing usable.
#[derive(Debug, Clone)]
pub(crate) enum UpstreamError {
    /// The upstream answered 404: it does not have it.
    NotFound(String),
    /// Unreachable, 429, 5xx, refused credentials, a broken answer: the cache may stand in.
    Unavailable(String),
}

/// A manifest as the upstream sent it.
pub(crate) struct UpstreamManifest {
    pub(crate) body: Bytes,
    pub(crate) media_type: Option<String>,
}

pub(crate) struct Upstream {
    pub(crate) config: ProxyConfig,
    /// `host[:port]` as credentials are keyed (`docker.io` for Docker Hub).
    registry: String,
    /// Docker Hub keeps official images under `library/`.
    is_docker_hub: bool,
    /// `scheme://host[:port]` requests go to: the configured scheme, never a fallback.
    base: String,
    insecure: bool,
    /// One HTTP client (TLS roots loaded once, one connection pool) for every repository.
    http: Option<reqwest::Client>,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    /// The `docker_config` file's modification time and length when the clients were made:
    /// a change makes new clients with the credentials read again, without a restart.
    docker_config_stamp: Mutex<Option<(SystemTime, u64)>>,
}

/// Pages of an upstream's tag list read at most (each of `tag_page_size` tags).
const MAX_TAG_PAGES: usize = 1000;

/// Bytes of an upstream's tag list read at most, all pages together: about 300,000 tags (an
/// upstream may ignore `n` and send them all in one page), and a bound on what an upstream that
/// sends an endless or huge list can make the cache hold.
const MAX_TAG_LIST_BYTES: usize = 16 << 20;

impl Upstream {
    pub(crate) fn new(config: ProxyConfig) -> Upstream {
        let insecure = config.insecure || config.upstream.starts_with("http://");
        let endpoint = wharf_oci::endpoint(&config.upstream, insecure).ok();
        let registry = endpoint
            .as_ref()
            .map(|e| e.display.clone())
            .unwrap_or_else(|| config.upstream.clone());
        let scheme = if config.upstream.starts_with("http://") {
            "http"
        } else {
            "https"
        };
        let host = endpoint
            .as_ref()
            .map(|e| e.host.clone())
            .unwrap_or_else(|| registry.clone());
        Upstream {
            is_docker_hub: registry == "docker.io",
            base: format!("{scheme}://{host}"),
            // Made now, at start, not on a first pull; a failure is reported on each use.
            http: wharf_image::client::http_client(insecure).ok(),
            registry,
            insecure,
            config,
            clients: Mutex::new(HashMap::new()),
            docker_config_stamp: Mutex::new(None),
        }
    }

    /// The upstream repository for `rest`, the part of a name after the prefix.
    pub(crate) fn repository(&self, rest: &str) -> String {
        let name = format!("{}{rest}", self.config.upstream_prefix);
        if self.is_docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name
        }
    }

    fn describe(&self, e: &ImageError) -> String {
        let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
        format!(
            "upstream {} of the pull-through cache {}: {e}{hint}",
            self.config.upstream, self.config.prefix
        )
    }

    fn classify(&self, e: ImageError) -> UpstreamError {
        let message = self.describe(&e);
        match e {
            ImageError::NotFound { .. } => UpstreamError::NotFound(message),
            _ => UpstreamError::Unavailable(message),
        }
    }

    /// The credential document and how to name it, from the entry's one credential source.
    fn credential_document(&self) -> Result<Option<(String, String)>, UpstreamError> {
        let c = &self.config;
        let entry = format!("[[proxy]] prefix {:?}", c.prefix);
        if let Some(path) = &c.docker_config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UpstreamError::Unavailable(format!(
                    "upstream {} of the pull-through cache {}: cannot read its docker_config {}: {e}",
                    c.upstream,
                    c.prefix,
                    path.display()
                ))
            })?;
            return Ok(Some((text, path.display().to_string())));
        }
        if let Some(helper) = &c.credential_helper {
            let doc = serde_json::json!({ "credHelpers": { self.registry.clone(): helper } });
            return Ok(Some((
                doc.to_string(),
                format!("credential_helper {helper:?} of {entry}"),
            )));
        }
        if let Some(user) = &c.username {
            let password = c.password.as_ref().map(|p| p.expose()).unwrap_or_default();
            let doc = serde_json::json!({ "auths": { self.registry.clone():
                { "username": user, "password": password } } });
            return Ok(Some((
                doc.to_string(),
                format!("username and password of {entry}"),
            )));
        }
        Ok(None)
    }

    /// Forgets the clients (their credentials and tokens) when the `docker_config` file changed
    /// since they were made: the next requests resolve the credentials again.
    fn forget_clients_if_credentials_changed(&self) {
        let Some(path) = &self.config.docker_config else {
            return;
        };
        // A missing file reads as "no stamp": its error is reported when the credentials are
        // resolved.
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut known = self
            .docker_config_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *known != stamp {
            if known.is_some() {
                tracing::info!(upstream = %self.config.upstream, file = %path.display(),
                    "the upstream credentials file changed: reading it again");
            }
            *known = stamp;
            self.clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// The client for `repository`, made (and its credentials resolved) on first use, and again
    /// after the `docker_config` file changed.
    pub(crate) async fn client(
        &self,
        repository: &str,
    ) -> Result<Arc<RegistryClient>, UpstreamError> {
        self.forget_clients_if_credentials_changed();
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(repository)
        {
            return Ok(client.clone());
        }
        let reference = wharf_oci::ImageRef {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            tag: None,
            digest: None,
        };
        let resolution = match self.credential_document()? {
            None => wharf_oci::Resolution::default(),
            Some((document, label)) => {
                let sources = wharf_oci::CredentialSources {
                    runner_auth_config: Some(wharf_oci::Secret(document)),
                    path: std::env::var_os("PATH"),
                    ..wharf_oci::CredentialSources::default()
                };
                let reference = reference.clone();
                // Credential helpers are programs: off the async workers.
                let mut resolution =
                    tokio::task::spawn_blocking(move || wharf_oci::resolve(&reference, &sources))
                        .await
                        .unwrap_or_default();
                // The document came from the [[proxy]] entry, not from DOCKER_AUTH_CONFIG.
                let relabel = |source: &mut String| {
                    if source == wharf_oci::RUNNER_AUTH_CONFIG_SOURCE {
                        *source = label.clone();
                    }
                };
                if let Some(found) = &mut resolution.found {
                    relabel(&mut found.source);
                }
                resolution.tried.retain(|t| {
                    t.source != wharf_oci::JOB_AUTH_CONFIG_SOURCE
                        && !t.source.contains("config.json")
                });
                for tried in &mut resolution.tried {
                    relabel(&mut tried.source);
                }
                for warning in &resolution.warnings {
                    tracing::warn!(upstream = %self.config.upstream, "{warning}");
                }
                resolution
            }
        };
        let image = format!("{}/{repository}", self.registry);
        let client = match &self.http {
            Some(http) => RegistryClient::with_http(
                http.clone(),
                &image,
                reference,
                resolution,
                self.insecure,
                // Exactly the configured scheme: never a fallback to plain http.
                Some(self.base.clone()),
            ),
            None => RegistryClient::new(
                &image,
                reference,
                resolution,
                self.insecure,
                Some(self.base.clone()),
            ),
        }
        .map_err(|e| self.classify(e))?;
        let client = Arc::new(client);
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(repository.to_string(), client.clone());
        Ok(client)
    }

    /// The digest the upstream gives for `reference` (HEAD: Docker Hub does not count it against
    /// the pull rate limit); `None` when it sends no `Docker-Content-Digest`.
    pub(crate) async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<String>, UpstreamError> {
        let client = self.client(repository).await?;
        let fetch = client
            .head(&format!("manifests/{reference}"), &accept())
            .await
            .map_err(|e| self.classify(e))?;
        Ok(fetch
            .response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// The manifest `reference`, at most `limit` bytes.
    pub(crate) async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: usize,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let client = self.client(repository).await?;
        let Fetch { mut response, url } = client
            .get(&format!("manifests/{reference}"), &accept())
            .await
            .map_err(|e| self.classify(e))?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let body = self
            .read_body(&mut response, &url, limit)
            .await?
            .ok_or_else(|| self.too_large(&url, "the manifest limit", limit))?;
        Ok(UpstreamManifest { body, media_type })
    }

    /// The body of `response` (from `url`); `None` once it is over `limit` bytes, without
    /// reading further.
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        url: &str,
        limit: usize,
    ) -> Result<Option<Bytes>, UpstreamError> {
        wharf_oci::body_up_to(response, limit)
            .await
            .map(|body| body.map(Bytes::from))
            .map_err(|e| UpstreamError::Unavailable(self.read_failed(url, &e)))
    }

    fn too_large(&self, url: &str, what: &str, limit: usize) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "upstream {} of the pull-through cache {}: {url} is larger than {what} of {limit} bytes",
            self.config.upstream, self.config.prefix
        ))
    }

    /// The upstream's tags of `repository`: every page of its tag list, `tag_page_size` tags
    /// each, following the `Link` header, at most [`MAX_TAG_PAGES`] pages and
    /// [`MAX_TAG_LIST_BYTES`] in all. Past either bound the pages read so far are the list (with
    /// a warning); a first page over the byte bound is an error.
    pub(crate) async fn tags(&self, repository: &str) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let client = self.client(repository).await?;
        let mut tags = Vec::new();
        let mut page = format!("tags/list?n={}", self.config.tag_page_size);
        let mut read = 0;
        for pages in 0..MAX_TAG_PAGES {
            let Fetch { mut response, url } =
                client.get(&page, &[]).await.map_err(|e| self.classify(e))?;
            let next = next_page(response.headers(), &url, repository);
            let Some(body) = self
                .read_body(&mut response, &url, MAX_TAG_LIST_BYTES - read)
                .await?
            else {
                if pages == 0 {
                    return Err(self.too_large(&url, "the tag list limit", MAX_TAG_LIST_BYTES));
                }
                tracing::warn!(
                    upstream = %self.config.upstream,
                    repository,
                    "the upstream's tag list is larger than {MAX_TAG_LIST_BYTES} bytes: listing the first {} tags",
                    tags.len()
                );
                return Ok(tags);
            };
            read += body.len();
            let list: TagList = serde_json::from_slice(&body).map_err(|e| {
                UpstreamError::Unavailable(format!(
                    "upstream {} of the pull-through cache {}: {url} is not a tag list: {e}",
                    self.config.upstream, self.config.prefix,
                ))
            })?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                Some(next) => page = next,
                None => return Ok(tags),
            }
        }
        tracing::warn!(
            upstream = %self.config.upstream,
            repository,
            "the upstream's tag list has more than {MAX_TAG_PAGES} pages of {}: listing the first {} tags",
            self.config.tag_page_size,
            tags.len()
        );
        Ok(tags)
    }

    /// `HEAD` of a blob: its length, if the upstream has it.
    pub(crate) async fn blob_length(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<u64>, UpstreamError> {
        let client = self.client(repository).await?;
        let fetch = client
            .head(&format!("blobs/{digest}"), &[])
            .await
            .map_err(|e| self.classify(e))?;
        Ok(fetch.response.content_length())
    }

    /// `GET` of a blob: the response to stream from.
    pub(crate) async fn blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Fetch, UpstreamError> {
        let client = self.client(repository).await?;
        client
            .get(&format!("blobs/{digest}"), &[])
            .await
            .map_err(|e| self.classify(e))
    }

    /// A blob answer from `url` past the entry's `max_blob_size` (`what`: "it announces N bytes").
    pub(crate) fn blob_too_large(&self, url: &str, what: &str) -> String {
        let c = &self.config;
        format!(
            "upstream {} of the pull-through cache {}: the blob at {url} is larger than \
             max_blob_size ({} bytes): {what}; nothing was stored. If the image really has a \
             layer this large, raise max_blob_size in the [[proxy]] entry with prefix {:?}",
            c.upstream,
            c.prefix,
            c.max_blob_size.as_u64(),
            c.prefix,
        )
    }

    /// A failure while reading a blob's body.
    pub(crate) fn read_failed(&self, url: &str, e: &reqwest::Error) -> String {
        format!(
            "upstream {} of the pull-through cache {}: reading {url}: {}",
            self.config.upstream,
            self.config.prefix,
            wharf_oci::describe_http_error(e)
        )
    }
}

fn accept() -> [(&'static str, String); 1] {
    [("Accept", wharf_image::manifest::ACCEPT.to_string())]
}

/// The next page of a tag list, from `Link: <URL>; rel="next"` (`URL` relative to the page at
/// `url`, or absolute), as the path after `/v2/<repository>/`: `None` on the last page, and for
/// a link to another registry or repository (not followed).
fn next_page(headers: &reqwest::header::HeaderMap, url: &str, repository: &str) -> Option<String> {
    let page = url::Url::parse(url).ok()?;
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params.split(';').any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .is_some_and(|rel| rel.trim_matches('"') == "next")
            });
            if !is_next {
                return None;
            }
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let next = page.join(target).ok()?;
            let same_registry = next.origin() == page.origin();
            let path = format!("/v2/{repository}/tags/list");
            (same_registry && next.path() == path)
                .then(|| format!("tags/list?{}", next.query().unwrap_or("")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(value: &str) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::LINK, value.parse().expect("header"));
        headers
    }

    #[test]
    fn the_next_tag_page_comes_from_the_link_header_of_the_same_repository_only() {
        let url = "http://127.0.0.1:5000/v2/team/app/tags/list?n=2";
        assert_eq!(
            next_page(
                &link(r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#),
                url,
                "team/app"
            ),
            Some("tags/list?last=b&n=2".to_string())
        );
        assert_eq!(
            next_page(
                &link(r#"<http://127.0.0.1:5000/v2/team/app/tags/list?last=b&n=2>; rel=next"#),
                url,
                "team/app"
            ),
            Some("tags/list?last=b&n=2".to_string())
        );
        for elsewhere in [
            r#"<http://evil.example/v2/team/app/tags/list?last=b>; rel="next""#,
            r#"</v2/team/other/tags/list?last=b>; rel="next""#,
            r#"</v2/team/app/tags/list?last=b>; rel="prev""#,
        ] {
            assert_eq!(
                next_page(&link(elsewhere), url, "team/app"),
                None,
                "{elsewhere}"
            );
        }
        assert_eq!(
            next_page(&reqwest::header::HeaderMap::new(), url, "team/app"),
            None
        );
    }
}

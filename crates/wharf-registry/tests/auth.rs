//! Access control through the real router, in process: Basic and token flows, the token
//! service (GET and OAuth2 POST, refresh tokens), challenges, external tokens, and the
//! access-control matrix (who may pull, push, delete what), asserted case by case. One concern
//! (access control seen from clients); the matrix alone is a quarter of the file. Each runs on
//! the filesystem and (an ignored tier, on a real Ceph RGW) on S3, but for the local signing key.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use wharf_registry::auth::htpasswd::hash_password;
use wharf_registry::auth::{AuthConfig, ServerFacts, build};
use wharf_registry::{Config, app_state, router};

mod common;

const HOST: &str = "registry.test:5000";

struct Reg {
    app: Router,
    dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    /// The first error's `detail`, "" when it has none.
    fn detail(&self) -> String {
        self.json()["errors"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A registry with `auth_toml` as its `[auth]` table (paths relative to its temp folder, where
/// `htpasswd` holds `users` and `ci.secret` the robot secret `robot-secret`).
fn registry(auth_toml: &str, users: &[(&str, &str)]) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p, 4).unwrap()))
        .collect();
    std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
    std::fs::write(dir.path().join("ci.secret"), "robot-secret\n").unwrap();
    let table: toml::Table = toml::from_str(auth_toml).unwrap();
    let cfg = AuthConfig::from_table(&table, dir.path()).unwrap();
    let root = dir.path().join("root");
    let setup = build(
        &cfg,
        &ServerFacts {
            root: root.clone(),
            tls: false,
            default_host: "127.0.0.1:5000".into(),
        },
    )
    .unwrap();
    // The filesystem, or a fresh bucket when the test runs on S3 (see `common`).
    let config = common::config(&root);
    let app = router(
        app_state(&config, setup.authorizer).unwrap(),
        setup.routes.unwrap_or_default(),
    );
    Reg { app, dir }
}

impl Reg {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", HOST);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let resp_headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        // On S3, blob GET/HEAD answer 307 to the bucket: followed as clients do.
        let r = common::follow_blob_redirect(
            common::Resp {
                status,
                headers: resp_headers,
                body,
            },
            method,
            headers,
        )
        .await;
        Resp {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        self.send(Method::GET, path, &h, b"").await
    }

    async fn token(&self, query: &str, auth: Option<&str>) -> Resp {
        self.get(&format!("/token?{query}"), auth).await
    }

    async fn post_token(&self, form: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await
    }

    /// A bearer header for a token granted to `user` (None: anonymous) for `scopes`.
    async fn bearer(&self, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let mut q = String::from("service=wharf-registry");
        for s in scopes {
            q.push_str("&scope=");
            q.push_str(&form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
        }
        let auth = user.map(|(u, p)| basic(u, p));
        let r = self.token(&q, auth.as_deref()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
        format!("Bearer {}", r.json()["token"].as_str().unwrap())
    }
}

/// The claims of a JWT (unverified: the registry verifies; tests only read).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const BASIC: &str = "mode = \"basic\"\nhtpasswd = \"htpasswd\"\n";
const TOKEN: &str = "mode = \"token\"\nhtpasswd = \"htpasswd\"\n";

async fn basic_mode_challenges_checks_and_denies() {
    let reg = registry(BASIC, &[("alice", "pw")]);
    let r = reg.get("/v2/", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        "Basic realm=\"wharf-registry\""
    );
    assert_eq!(r.code(), "UNAUTHORIZED");
    // The message is every registry's; the detail says what was wrong, never a secret.
    assert_eq!(r.json()["errors"][0]["message"], "authentication required");
    assert_eq!(
        r.detail(),
        "no credentials were sent: log in with a user of this registry"
    );

    let good = basic("alice", "pw");
    assert_eq!(reg.get("/v2/", Some(&good)).await.status, StatusCode::OK);
    for wrong in [basic("alice", "nope"), basic("eve", "pw")] {
        let r = reg.get("/v2/", Some(&wrong)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.detail(), "wrong user name or password");
        assert!(!r.text().contains("nope"), "{}", r.text());
    }
    let r = reg.get("/v2/", Some("Basic %%%")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.detail(),
        "malformed Basic credentials: base64 of user:password expected"
    );
    let r = reg.get("/v2/", Some("Bearer abc")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.detail(),
        "the Authorization scheme Bearer is not accepted here"
    );

    // Without a policy every user may do everything, the catalog included.
    let r = reg.get("/v2/team/app/tags/list", Some(&good)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.json());
    assert_eq!(
        reg.get("/v2/_catalog", Some(&good)).await.status,
        StatusCode::OK
    );
    // ...and anonymous nothing.
    let r = reg.get("/v2/team/app/tags/list", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.detail(),
        "no credentials were sent: log in with a user of this registry (the request needs repository:team/app:pull)"
    );
}

async fn basic_mode_notices_htpasswd_changes() {
    let reg = registry(BASIC, &[("alice", "pw")]);
    let path = reg.dir.path().join("htpasswd");
    let text = format!(
        "alice:{}\nbob:{}\n",
        hash_password("pw", 4).unwrap(),
        hash_password("bob-pw", 4).unwrap()
    );
    let tmp = reg.dir.path().join("htpasswd.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // The file is checked on cache misses (and at most once a second on hits): bob is new, so a
    // miss, so seen at once.
    assert_eq!(
        reg.get("/v2/", Some(&basic("bob", "bob-pw"))).await.status,
        StatusCode::OK
    );
}

async fn token_mode_challenge_names_realm_service_and_scope() {
    let reg = registry(TOKEN, &[("alice", "pw")]);
    let r = reg.get("/v2/", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        format!("Bearer realm=\"http://{HOST}/token\",service=\"wharf-registry\"")
    );
    let r = reg
        .send(Method::POST, "/v2/team/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        format!(
            "Bearer realm=\"http://{HOST}/token\",service=\"wharf-registry\",scope=\"repository:team/app:pull,push\""
        )
    );
    // A mount names the source's pull scope too, so a token asked for from the challenge
    // covers the mount.
    let r = reg
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/?mount=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&from=team/base",
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        format!(
            "Bearer realm=\"http://{HOST}/token\",service=\"wharf-registry\",scope=\"repository:team/app:pull,push repository:team/base:pull\""
        )
    );
    let r = reg.get("/v2/_catalog", None).await;
    assert!(
        r.header("www-authenticate")
            .ends_with(",scope=\"registry:catalog:*\""),
        "{}",
        r.header("www-authenticate")
    );
}

async fn token_service_get_grants_asked_intersect_permitted() {
    let reg = registry(
        &format!(
            "{TOKEN}
[[allow]]
users = [\"alice\"]
repositories = [\"team/*\"]
actions = [\"pull\"]
"
        ),
        &[("alice", "pw")],
    );
    // docker login: Basic, offline_token, client_id, no scope.
    let r = reg
        .token(
            "service=wharf-registry&offline_token=true&client_id=docker",
            Some(&basic("alice", "pw")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["token"], j["access_token"]);
    assert!(j["expires_in"].as_u64().unwrap() >= 60);
    assert!(j["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(j["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(r.header("content-type"), "application/json");

    // Another service's name: refused, naming the one this token service serves.
    let r = reg
        .token("service=other-registry", Some(&basic("alice", "pw")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error_description"],
        "unknown service: this token service issues tokens for service \"wharf-registry\" (the service in the registry's WWW-Authenticate)"
    );

    // No refresh token unless asked.
    let r = reg
        .token("service=wharf-registry", Some(&basic("alice", "pw")))
        .await;
    assert!(r.json().get("refresh_token").is_none());

    // Repeated and space-separated scopes; partial grants are not errors.
    let r = reg
        .token(
            "service=wharf-registry&scope=repository%3Ateam%2Fapp%3Apull%2Cpush%20repository%3Aother%3Apull&scope=registry%3Acatalog%3A*&scope=repository%3Ateam%2Fweb%3Apull",
            Some(&basic("alice", "pw")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let access = &claims(r.json()["token"].as_str().unwrap())["access"];
    assert_eq!(
        access,
        &serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "team/web", "actions": ["pull"]},
        ])
    );
    let c = claims(r.json()["token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "wharf-registry");
    assert_eq!(c["iss"], "wharf-registry");

    // Anonymous: a token with an empty grant.
    let r = reg
        .token(
            "service=wharf-registry&scope=repository%3Ateam%2Fapp%3Apull",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let c = claims(r.json()["token"].as_str().unwrap());
    assert_eq!(c["sub"], "");
    assert_eq!(c["access"], serde_json::json!([]));

    // Bad credentials and another service.
    let r = reg
        .token("service=wharf-registry", Some(&basic("alice", "bad")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&r.body).contains("bad"));
    let r = reg
        .token("service=elsewhere", Some(&basic("alice", "pw")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Pushes `blob` to `team/base` as alice (monolithic upload).
async fn push_base_blob(reg: &Reg, blob: &[u8], digest: &str) {
    let token = reg
        .bearer(Some(("alice", "pw")), &["repository:team/base:pull,push"])
        .await;
    let r = reg
        .send(
            Method::POST,
            &format!("/v2/team/base/blobs/uploads/?digest={digest}"),
            &[("authorization", &token)],
            blob,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

async fn mount_works_with_a_token_for_the_scopes_its_challenge_names() {
    use sha2::Digest as _;
    let reg = registry(TOKEN, &[("alice", "pw")]);
    let alice = Some(("alice", "pw"));
    let blob = b"a layer both repositories share";
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(blob)));
    push_base_blob(&reg, blob, &digest).await;

    let mount = format!("/v2/team/app/blobs/uploads/?mount={digest}&from=team/base");
    let r = reg.send(Method::POST, &mount, &[], b"").await;
    let challenge = r.header("www-authenticate");
    let scopes = challenge
        .split("scope=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    // A token for exactly what the challenge lists mounts (201).
    let both = reg
        .bearer(alice, &scopes.split(' ').collect::<Vec<_>>())
        .await;
    let r = reg
        .send(Method::POST, &mount, &[("authorization", &both)], b"")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), digest);

    // A token for the target alone may still push: the mount falls back to an upload (202).
    let reg2 = registry(TOKEN, &[("alice", "pw")]);
    push_base_blob(&reg2, blob, &digest).await;
    let app_only = reg2.bearer(alice, &["repository:team/app:pull,push"]).await;
    let r = reg2
        .send(Method::POST, &mount, &[("authorization", &app_only)], b"")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

async fn tokens_open_exactly_their_scope() {
    let reg = registry(TOKEN, &[("alice", "pw")]);
    let alice = Some(("alice", "pw"));
    let pull = reg.bearer(alice, &["repository:team/app:pull"]).await;
    assert_eq!(reg.get("/v2/", Some(&pull)).await.status, StatusCode::OK);
    let r = reg.get("/v2/team/app/tags/list", Some(&pull)).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "allowed, but nothing there yet"
    );

    // Valid token, missing scope: 401 (not 403), error="insufficient_scope", scope to ask for.
    let r = reg
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &pull)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.header("www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:team/app:pull,push\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // A client that kept a pull token for a push (oras-py's token backend does) is told why.
    assert_eq!(
        r.detail(),
        "the bearer token does not grant repository:team/app:pull,push: ask the token service for a token with this scope (the scope in WWW-Authenticate)"
    );
    let r = reg.get("/v2/team/other/tags/list", Some(&pull)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let push = reg.bearer(alice, &["repository:team/app:pull,push"]).await;
    let r = reg
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &push)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // A forged or broken token.
    let mut forged = pull.clone();
    forged.push('x');
    let r = reg.get("/v2/", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .ends_with("error=\"invalid_token\"")
    );
    assert!(
        r.detail().starts_with("the bearer token was refused (")
            && r.detail()
                .ends_with("): ask the token service for a new one"),
        "{}",
        r.detail()
    );
    assert!(
        !r.text().contains(&forged["Bearer ".len()..]),
        "the token is not echoed"
    );
}

async fn oauth2_password_and_refresh_grants() {
    let reg = registry(TOKEN, &[("alice", "pw")]);
    let r = reg
        .post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("service", "wharf-registry"),
            ("client_id", "test"),
            ("access_type", "offline"),
            ("scope", "repository:team/app:pull repository:team/app:push"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let j = r.json();
    assert_eq!(j["scope"], "repository:team/app:pull,push");
    let refresh = j["refresh_token"].as_str().unwrap().to_string();

    // The docker CLI's refresh: grant_type=refresh_token with a scope.
    let r = reg
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "wharf-registry"),
            ("client_id", "registry-client"),
            ("scope", "repository:team/app:pull"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&token)["sub"], "alice");
    let r = reg
        .get("/v2/team/app/tags/list", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A refresh token is not an access token.
    let r = reg.get("/v2/", Some(&format!("Bearer {refresh}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Wrong password, unknown grant, missing fields.
    let r = reg
        .post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "x"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = reg
        .post_token(&[("grant_type", "client_credentials")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = reg.post_token(&[("grant_type", "password")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A password change revokes refresh tokens issued before it.
    std::fs::write(
        reg.dir.path().join("htpasswd"),
        format!("alice:{}\n", hash_password("new-pw", 4).unwrap()),
    )
    .unwrap();
    let r = reg
        .post_token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_key_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let make = |root: &Path| {
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("alice:{}\n", hash_password("pw", 4).unwrap()),
        )
        .unwrap();
        let table: toml::Table = toml::from_str(TOKEN).unwrap();
        let cfg = AuthConfig::from_table(&table, dir.path()).unwrap();
        let setup = build(
            &cfg,
            &ServerFacts {
                root: root.to_path_buf(),
                tls: false,
                default_host: HOST.into(),
            },
        )
        .unwrap();
        let config = Config {
            root: root.to_path_buf(),
            ..Config::default()
        };
        Reg {
            app: router(
                app_state(&config, setup.authorizer).unwrap(),
                setup.routes.unwrap_or_default(),
            ),
            dir: tempfile::tempdir().unwrap(),
        }
    };
    let first = make(&root);
    let token = first
        .bearer(Some(("alice", "pw")), &["repository:a:pull"])
        .await;
    drop(first);
    let second = make(&root);
    assert_eq!(
        second.get("/v2/a/tags/list", Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join("auth/token-signing-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

async fn external_token_server_is_trusted_by_certificate() {
    // The "external" token server: its own key and certificate.
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, cert.pem()).unwrap();
    let reg = registry(
        &format!(
            "{TOKEN}\n[external]\nissuer = \"auth.example\"\nrootcertbundle = \"{}\"\n",
            bundle.display()
        ),
        &[("alice", "pw")],
    );
    let kid = wharf_registry::auth::jwt::libtrust_key_id(
        &rcgen::PublicKeyData::subject_public_key_info(&pair),
    );
    let sign = |iss: &str, aud: &str, exp_offset: i64| {
        let now = wharf_registry::auth::jwt::unix_now() as i64;
        let claims = serde_json::json!({
            "iss": iss, "sub": "carol", "aud": aud, "exp": now + exp_offset, "nbf": now - 5,
            "iat": now, "jti": "x",
            "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(pair.serialized_der());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        )
    };
    let ok = sign("auth.example", "wharf-registry", 300);
    assert_eq!(
        reg.get("/v2/team/app/tags/list", Some(&ok)).await.status,
        StatusCode::NOT_FOUND
    );
    for bad in [
        sign("someone.else", "wharf-registry", 300),
        sign("auth.example", "other-service", 300),
        sign("auth.example", "wharf-registry", -3600),
    ] {
        let r = reg.get("/v2/team/app/tags/list", Some(&bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.header("www-authenticate")
                .ends_with("error=\"invalid_token\"")
        );
    }
}

/// The access-control matrix: every (who, repository, action) decided by the policy below,
/// checked through real requests in Basic mode (where policy decides each request) and in
/// token mode (where the policy decides each grant).
const POLICY: &str = r#"
[groups]
devs = ["bob"]
ops = ["olga"]

[admins]
groups = ["ops"]

[[allow]]
users = ["anonymous"]
repositories = ["public/**"]
actions = ["pull"]

[[allow]]
users = ["*"]
repositories = ["public/**", "base/*"]
actions = ["pull"]

[[allow]]
groups = ["devs"]
repositories = ["team/*"]
actions = ["pull", "push"]

[[allow]]
users = ["alice"]
repositories = ["team/**"]
actions = ["*"]

[[allow]]
groups = ["ops"]
repositories = ["**"]
actions = ["pull", "delete"]

[robots.ci]
secret_file = "ci.secret"
groups = ["devs"]
"#;

#[derive(Clone, Copy, Debug)]
enum Op {
    Pull,
    Push,
    Delete,
    Catalog,
}

const USERS: &[(&str, &str)] = &[
    ("alice", "a-pw"),
    ("bob", "b-pw"),
    ("olga", "o-pw"),
    ("mallory", "m-pw"),
];

/// (who, operation, repository, allowed?)
fn matrix() -> Vec<(&'static str, Op, &'static str, bool)> {
    use Op::*;
    vec![
        // anonymous: pull public only
        ("anonymous", Pull, "public/x/y", true),
        ("anonymous", Push, "public/x/y", false),
        ("anonymous", Pull, "base/os", false),
        ("anonymous", Pull, "team/app", false),
        ("anonymous", Catalog, "", false),
        // any signed-in user (mallory is in no group): public and base/*
        ("mallory", Pull, "public/x", true),
        ("mallory", Pull, "base/os", true),
        ("mallory", Pull, "base/os/deep", false),
        ("mallory", Push, "base/os", false),
        ("mallory", Pull, "team/app", false),
        ("mallory", Delete, "team/app", false),
        ("mallory", Catalog, "", false),
        // bob (devs): pull+push team/* one level, not deeper, no delete
        ("bob", Pull, "team/app", true),
        ("bob", Push, "team/app", true),
        ("bob", Delete, "team/app", false),
        ("bob", Push, "team/app/sub", false),
        ("bob", Push, "teamx/app", false),
        ("bob", Push, "public/x", false),
        ("bob", Catalog, "", false),
        // the ci robot is in devs too
        ("ci", Push, "team/app", true),
        ("ci", Delete, "team/app", false),
        ("ci", Pull, "other/app", false),
        // alice: everything under team/, any depth
        ("alice", Delete, "team/app/sub", true),
        ("alice", Push, "team/app", true),
        ("alice", Push, "other/app", false),
        ("alice", Catalog, "", false),
        // olga (ops, admins): pull and delete everywhere, never push; the catalog
        ("olga", Pull, "any/thing", true),
        ("olga", Delete, "any/thing", true),
        ("olga", Push, "any/thing", false),
        ("olga", Catalog, "", true),
    ]
}

fn password_of(who: &str) -> Option<&'static str> {
    if who == "ci" {
        return Some("robot-secret");
    }
    USERS.iter().find(|(u, _)| *u == who).map(|(_, p)| *p)
}

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Perform `op` and say whether access control let it through (any answer but 401/403).
async fn attempt(reg: &Reg, auth: Option<&str>, op: Op, repo: &str) -> bool {
    let h: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let r = match op {
        Op::Pull => {
            reg.send(Method::GET, &format!("/v2/{repo}/tags/list"), &h, b"")
                .await
        }
        Op::Push => {
            reg.send(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &h, b"")
                .await
        }
        Op::Delete => {
            reg.send(
                Method::DELETE,
                &format!("/v2/{repo}/manifests/{DIGEST}"),
                &h,
                b"",
            )
            .await
        }
        Op::Catalog => reg.send(Method::GET, "/v2/_catalog", &h, b"").await,
    };
    match r.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => false,
        s => {
            assert!(
                s.is_success() || s == StatusCode::NOT_FOUND,
                "{op:?} {repo}: {s} {:?}",
                r.json()
            );
            true
        }
    }
}

fn scope_of(op: Op, repo: &str) -> String {
    match op {
        Op::Pull => format!("repository:{repo}:pull"),
        Op::Push => format!("repository:{repo}:pull,push"),
        Op::Delete => format!("repository:{repo}:delete"),
        Op::Catalog => "registry:catalog:*".to_string(),
    }
}

async fn access_matrix_in_basic_mode() {
    let reg = registry(&format!("{BASIC}{POLICY}"), USERS);
    for (who, op, repo, allowed) in matrix() {
        let auth = password_of(who).map(|p| basic(who, p));
        let got = attempt(&reg, auth.as_deref(), op, repo).await;
        assert_eq!(got, allowed, "basic: {who} {op:?} {repo}");
    }
    // An authenticated user refused by policy gets 403 DENIED, not a login prompt.
    let r = reg
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &basic("mallory", "m-pw"))],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");
    assert_eq!(
        r.detail(),
        "user mallory is not allowed repository:team/app:pull,push by this registry's access policy"
    );
}

async fn access_matrix_in_token_mode() {
    let reg = registry(&format!("{TOKEN}{POLICY}"), USERS);
    for (who, op, repo, allowed) in matrix() {
        let creds = password_of(who).map(|p| (who, p));
        let bearer = reg.bearer(creds, &[&scope_of(op, repo)]).await;
        let got = attempt(&reg, Some(&bearer), op, repo).await;
        assert_eq!(got, allowed, "token: {who} {op:?} {repo}");
    }
}

async fn robots_rotate_without_touching_people() {
    let reg = registry(&format!("{BASIC}{POLICY}"), USERS);
    let ci_old = basic("ci", "robot-secret");
    assert_eq!(reg.get("/v2/", Some(&ci_old)).await.status, StatusCode::OK);
    let secret = reg.dir.path().join("ci.secret");
    let tmp = reg.dir.path().join("ci.secret.new");
    std::fs::write(&tmp, "robot-secret-2\n").unwrap();
    std::fs::rename(&tmp, &secret).unwrap();
    let ci_new = basic("ci", "robot-secret-2");
    assert_eq!(reg.get("/v2/", Some(&ci_new)).await.status, StatusCode::OK);
    assert_eq!(
        reg.get("/v2/", Some(&ci_old)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old secret is void once the new one was seen"
    );
    assert_eq!(
        reg.get("/v2/", Some(&basic("bob", "b-pw"))).await.status,
        StatusCode::OK
    );
}

#[test]
fn setup_mistakes_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let facts = ServerFacts {
        root: dir.path().join("root"),
        tls: false,
        default_host: HOST.into(),
    };
    std::fs::write(dir.path().join("md5"), "bob:$apr1$x$y\n").unwrap();
    std::fs::write(dir.path().join("empty"), "").unwrap();
    let attempt = |toml: &str| {
        let table: toml::Table = toml::from_str(toml).unwrap();
        AuthConfig::from_table(&table, dir.path()).and_then(|c| build(&c, &facts).map(|_| ()))
    };
    let e = attempt("mode = \"basic\"\nhtpasswd = \"md5\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("md5:1") && e.contains("MD5"), "{e}");
    let e = attempt("htpasswd = \"empty\"\n").unwrap_err().to_string();
    assert!(e.contains("--auth none"), "{e}");
    let e = attempt("mode = \"basic\"\nhtpasswd = \"empty\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no users"), "{e}");
    let e = attempt("mode = \"token\"\nhtpasswd = \"empty\"\n[token]\nexpires_in = 30\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 60"), "{e}");
    let e = attempt("mode = \"basic\"\nhtpasswd = \"nope\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    assert!(attempt("mode = \"none\"\n").is_ok());
}

on_each_backend!(
    basic_mode_challenges_checks_and_denies,
    basic_mode_notices_htpasswd_changes,
    token_mode_challenge_names_realm_service_and_scope,
    token_service_get_grants_asked_intersect_permitted,
    mount_works_with_a_token_for_the_scopes_its_challenge_names,
    tokens_open_exactly_their_scope,
    oauth2_password_and_refresh_grants,
    external_token_server_is_trusted_by_certificate,
    access_matrix_in_basic_mode,
    access_matrix_in_token_mode,
    robots_rotate_without_touching_people,
);

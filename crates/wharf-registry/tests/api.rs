//! In-process tests of every endpoint and error path (tower `oneshot` against the router), the
//! scopes each request asks for, and metrics. Failure, load, gc and the socket server are in
//! `durability.rs`. One concern, the HTTP contract endpoint by endpoint; over 800 lines because
//! the endpoints and their errors are many.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use wharf_registry::auth::{
    Access, Action, AllowAll, AuthErrorCode, AuthOutcome, Authorizer, Identity, ResourceKind,
};

mod common;

use common::*;
use wharf_registry::names::{Digest, RepoName};
use wharf_registry::services::{Limits, Registry};

async fn ping_answers_with_the_api_version() {
    let reg = registry();
    for path in ["/v2/", "/v2"] {
        let r = reg.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    }
    let r = reg.get("/v2/nothing/here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    assert_eq!(reg.get("/elsewhere").await.status, StatusCode::NOT_FOUND);
}

async fn monolithic_blob_push_then_head_get_and_ranges() {
    let reg = registry();
    let data = b"hello blob world";
    let digest = reg.push_blob("team/app", data).await;

    let head = reg
        .call(
            Method::HEAD,
            &format!("/v2/team/app/blobs/{digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert_eq!(head.header("docker-content-digest"), digest);
    assert!(head.body.is_empty());

    let get = reg.get(&format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(&get.body[..], data);

    let blob = format!("/v2/team/app/blobs/{digest}");
    let (reg, blob) = (&reg, blob.as_str());
    let ranged = move |range: &'static str| async move {
        reg.call(Method::GET, blob, &[("range", range)], b"").await
    };
    let part = ranged("bytes=6-9").await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], b"blob");
    assert_eq!(
        part.header("content-range"),
        format!("bytes 6-9/{}", data.len())
    );

    let bad = ranged("bytes=100-200").await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.code(), "RANGE_INVALID");
    assert_eq!(
        bad.header("content-range"),
        format!("bytes */{}", data.len())
    );

    // RFC 9110 14.2: a range unit other than bytes is ignored, and so are several ranges
    // (as S3 does): the whole blob, 200. A last byte past the end means the end.
    for ignored in ["items=0-1", "bytes=0-1,4-5"] {
        let whole = ranged(ignored).await;
        assert_eq!(whole.status, StatusCode::OK, "{ignored}");
        assert_eq!(&whole.body[..], data, "{ignored}");
    }
    let to_the_end = ranged("bytes=6-99999999999999999999").await;
    assert_eq!(to_the_end.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&to_the_end.body[..], &data[6..]);

    // Blobs are per repository: another repository does not serve it.
    let other = reg.get(&format!("/v2/other/blobs/{digest}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.code(), "BLOB_UNKNOWN");

    // Layout: content-addressed, sharded by the first two hex characters.
    let hex = &digest[7..];
    assert!(
        backend() != Backend::Fs
            || reg
                .root()
                .join("blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .is_file()
    );
}

async fn blob_errors_are_4xx_with_oci_codes() {
    let reg = registry();
    let unknown = digest_of(b"nope");
    let r = reg.get(&format!("/v2/a/blobs/{unknown}")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    assert_eq!(r.header("content-type"), "application/json");

    let r = reg.get("/v2/a/blobs/sha256:xyz").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );

    // Wrong digest for the content: refused, nothing visible.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={unknown}"),
            &[],
            b"other content",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(
        reg.get(&format!("/v2/a/blobs/{}", digest_of(b"other content")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = reg
        .call(Method::DELETE, &format!("/v2/a/blobs/{unknown}"), &[], b"")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );

    let r = reg
        .call(Method::POST, &format!("/v2/a/blobs/{unknown}"), &[], b"")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
}

async fn repository_names_are_validated() {
    let reg = registry();
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a%2F..%2F..%2Fetc/tags/list",
        "/v2/_x/manifests/latest",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = reg.call(Method::GET, path, &[], b"").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    let r = reg.get("/v2/never/pushed/tags/list").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
}

async fn post_put_and_chunked_uploads() {
    let reg = registry();
    // POST then PUT with the whole body.
    let start = reg
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let location = start.header("location").to_string();
    assert!(location.starts_with("/v2/r/blobs/uploads/"), "{location}");
    assert!(!start.header("docker-upload-uuid").is_empty());
    let data = b"post then put";
    let digest = digest_of(data);
    let done = reg
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            data,
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED);
    assert_eq!(done.header("location"), format!("/v2/r/blobs/{digest}"));
    assert_eq!(done.header("docker-content-digest"), digest);

    // Chunked: two PATCHes with Content-Range, status, an out-of-order chunk, then PUT.
    let location = reg
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    let r = reg
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"chunk",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    let location = r.header("location").to_string();
    let out_of_order = reg
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "10-14")],
            b"later",
        )
        .await;
    assert_eq!(out_of_order.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(out_of_order.header("range"), "0-4");
    let r = reg
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "5-10")],
            b"-two-!",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-10");
    let status = reg.get(&location).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-10");
    // A chunk without Content-Range is a streamed append.
    let r = reg.call(Method::PATCH, &location, &[], b"+tail").await;
    assert_eq!(r.header("range"), "0-15");
    let whole = b"chunk-two-!+tail";
    let digest = digest_of(whole);
    let r = reg
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        &reg.get(&format!("/v2/r/blobs/{digest}")).await.body[..],
        whole
    );
    // The session is gone once committed.
    let r = reg.get(&location).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );

    // PUT without a digest, and with a wrong one.
    let location = reg
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    let r = reg.call(Method::PUT, &location, &[], b"x").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = reg
        .call(
            Method::PUT,
            &format!("{location}?digest={}", digest_of(b"y")),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );

    // Cancel.
    let location = reg
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    assert_eq!(
        reg.call(Method::DELETE, &location, &[], b"").await.status,
        StatusCode::NO_CONTENT
    );
    let r = reg.call(Method::PATCH, &location, &[], b"x").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );

    // A session id is no key to another repository, nor to the file system.
    let location = reg
        .call(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    let id = location.rsplit('/').next().unwrap_or("");
    let r = reg.get(&format!("/v2/other/blobs/uploads/{id}")).await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = reg.get("/v2/r/blobs/uploads/..").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn manifests_by_tag_and_digest() {
    let reg = registry();
    let manifest = reg.push_image("team/app", "v1", b"layer-1").await;
    let digest = digest_of(&manifest);

    for reference in ["v1", digest.as_str()] {
        let r = reg
            .get(&format!("/v2/team/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], &manifest[..]);
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), digest);
        let h = reg
            .call(
                Method::HEAD,
                &format!("/v2/team/app/manifests/{reference}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.header("content-length"), manifest.len().to_string());
        assert!(h.body.is_empty());
    }
    let r = reg.get("/v2/team/app/manifests/v2").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let r = reg.get("/v2/team/app/manifests/bad..tag?").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "an unknown tag");
    // No manifest can have a tag outside the grammar, so reading one finds nothing: 404, as the
    // OCI conformance suite expects (it asks for `.INVALID_MANIFEST_NAME`).
    let r = reg.get("/v2/team/app/manifests/.hidden").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );

    // Push by digest: must match.
    let r = reg
        .push_manifest("team/app", &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        format!("/v2/team/app/manifests/{digest}")
    );
    let r = reg
        .push_manifest("team/app", &digest_of(b"x"), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );

    // An index over the image.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .expect("json");
    let r = reg
        .push_manifest("team/app", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        reg.get("/v2/team/app/manifests/multi")
            .await
            .header("content-type"),
        OCI_INDEX
    );

    // Docker schema 2 media types are accepted too.
    let docker = String::from_utf8(manifest.clone()).expect("utf8").replace(
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    let r = reg
        .push_manifest(
            "team/app",
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
            docker.as_bytes(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

async fn invalid_manifests_are_refused_with_the_right_code() {
    let reg = registry();
    let config = reg.push_blob("r", b"{}").await;
    let missing = digest_of(b"never pushed");

    let m = image_manifest(&config, 2, &missing, 12, None);
    let r = reg.push_manifest("r", "t", OCI_MANIFEST, &m).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );

    // A blob of another repository is not usable without a mount.
    let elsewhere = reg.push_blob("other", b"layer elsewhere").await;
    let m = image_manifest(&config, 2, &elsewhere, 15, None);
    let r = reg.push_manifest("r", "t", OCI_MANIFEST, &m).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");

    let schema1 = br#"{"schemaVersion":1,"name":"r","tag":"t","fsLayers":[],"history":[]}"#;
    let r = reg
        .push_manifest(
            "r",
            "t",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("schema 1")
    );

    let r = reg.push_manifest("r", "t", OCI_MANIFEST, b"not json").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );

    let r = reg
        .push_manifest(
            "r",
            "t",
            "application/vnd.example+json",
            br#"{"schemaVersion":2}"#,
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");

    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]
    }))
    .expect("json");
    let r = reg.push_manifest("r", "t", OCI_INDEX, &index).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");

    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = reg.push_manifest("r", "t", OCI_MANIFEST, &big).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );

    let r = reg.push_manifest("r", "bad/tag", OCI_MANIFEST, b"{}").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "bad/tag is no manifest path"
    );
    // Nothing of the above was tagged.
    assert_eq!(
        reg.get("/v2/r/manifests/t").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn tags_and_catalog_paginate_with_link_headers() {
    let reg = registry();
    let manifest = reg.push_image("app", "c", b"l").await;
    for tag in ["a", "b", "d"] {
        assert_eq!(
            reg.push_manifest("app", tag, OCI_MANIFEST, &manifest)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let all = reg.get("/v2/app/tags/list").await;
    assert_eq!(
        all.json(),
        serde_json::json!({"name": "app", "tags": ["a", "b", "c", "d"]})
    );
    let page = reg.get("/v2/app/tags/list?n=2").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let page = reg.get("/v2/app/tags/list?n=2&last=b").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["c", "d"]));
    assert_eq!(page.header("link"), "");
    let r = reg.get("/v2/app/tags/list?n=lots").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    reg.push_blob("zeta/one", b"x").await;
    reg.push_blob("beta", b"x").await;
    let cat = reg.get("/v2/_catalog").await;
    assert_eq!(
        cat.json(),
        serde_json::json!({"repositories": ["app", "beta", "zeta/one"]})
    );
    let page = reg.get("/v2/_catalog?n=1&last=app").await;
    assert_eq!(page.json()["repositories"], serde_json::json!(["beta"]));
    assert_eq!(
        page.header("link"),
        "</v2/_catalog?n=1&last=beta>; rel=\"next\""
    );
}

async fn deletes_of_tags_manifests_and_blobs() {
    let reg = registry();
    let manifest = reg.push_image("app", "v1", b"layer").await;
    let digest = digest_of(&manifest);
    reg.push_manifest("app", "v2", OCI_MANIFEST, &manifest)
        .await;

    // Deleting a tag leaves the manifest and other tags.
    assert_eq!(
        reg.call(Method::DELETE, "/v2/app/manifests/v1", &[], b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reg.get("/v2/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reg.get("/v2/app/manifests/v2").await.status, StatusCode::OK);
    assert_eq!(
        reg.call(Method::DELETE, "/v2/app/manifests/v1", &[], b"")
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );

    // Deleting by digest removes it and its tags.
    assert_eq!(
        reg.call(
            Method::DELETE,
            &format!("/v2/app/manifests/{digest}"),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reg.get(&format!("/v2/app/manifests/{digest}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        reg.get("/v2/app/tags/list").await.json()["tags"],
        serde_json::json!([])
    );

    let layer = digest_of(b"layer");
    assert_eq!(
        reg.call(Method::DELETE, &format!("/v2/app/blobs/{layer}"), &[], b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{layer}")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn referrers_with_subject_and_artifact_type_filter() {
    let reg = registry();
    let image = reg.push_image("app", "v1", b"layer").await;
    let image_digest = digest_of(&image);

    // Empty list (not 404) before any referrer, even for unknown subjects.
    let r = reg.get(&format!("/v2/app/referrers/{image_digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));

    let config = reg.push_blob("app", b"{}").await;
    let sig_layer = reg.push_blob("app", b"signature").await;
    let sig = image_manifest(
        &config,
        2,
        &sig_layer,
        9,
        Some((&image_digest, image.len())),
    );
    let r = reg
        .push_manifest("app", &digest_of(&sig), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("oci-subject"), image_digest);

    let r = reg.get(&format!("/v2/app/referrers/{image_digest}")).await;
    let list = r.json();
    assert_eq!(list["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        list["manifests"][0]["digest"],
        serde_json::json!(digest_of(&sig))
    );
    assert_eq!(
        list["manifests"][0]["artifactType"],
        serde_json::json!("application/vnd.example.sig")
    );
    assert_eq!(
        list["manifests"][0]["annotations"]["org.example"],
        serde_json::json!("yes")
    );
    assert_eq!(r.header("oci-filters-applied"), "");

    let r = reg
        .get(&format!(
            "/v2/app/referrers/{image_digest}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let r = reg
        .get(&format!(
            "/v2/app/referrers/{image_digest}?artifactType=other"
        ))
        .await;
    assert_eq!(r.json()["manifests"], serde_json::json!([]));

    let r = reg.get("/v2/app/referrers/sha256:nothex").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );

    // Deleting the referrer removes it from the list.
    reg.call(
        Method::DELETE,
        &format!("/v2/app/manifests/{}", digest_of(&sig)),
        &[],
        b"",
    )
    .await;
    let r = reg.get(&format!("/v2/app/referrers/{image_digest}")).await;
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
}

async fn cross_repository_mount() {
    let reg = registry();
    let digest = reg.push_blob("src", b"shared layer").await;

    let r = reg
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(
        reg.get(&format!("/v2/dst/blobs/{digest}")).await.status,
        StatusCode::OK
    );

    // Automatic mount without `from`.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/auto/blobs/uploads/?mount={digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Unknown blob: falls back to an upload session.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={}&from=src", digest_of(b"?")),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").starts_with("/v2/dst/blobs/uploads/"));

    let r = reg
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=Bad"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.code(), "NAME_INVALID");
}

/// `reg`'s registry served again through a storage wrapper that counts metadata lookups.
fn counting_lookups(reg: &Reg) -> (axum::Router, Arc<common::interposed::Interposed>) {
    let anything = Digest::of(b"");
    let counting = Arc::new(common::interposed::interposed(
        reg.storage.clone(),
        &anything,
        None,
    ));
    let mut state = wharf_registry::app_state(&reg.config, Arc::new(AllowAll)).expect("state");
    state.registry = Arc::new(Registry::new(counting.clone(), Limits::default()));
    (wharf_registry::router(state, axum::Router::new()), counting)
}

/// A manifest may name the same blob or child manifest thousands of times (a 4 MiB manifest
/// holds about 28,000 descriptors), and each check of one costs several storage calls (on S3,
/// requests, one of them a write): each distinct one is checked once. 4.4 s for 28,000 copies of
/// one layer before, 0.05 s after (release build, filesystem).
async fn a_manifest_naming_one_blob_many_times_checks_it_once() {
    let reg = registry();
    let layer = reg.push_blob("team/app", b"the layer").await;
    let config = reg.push_blob("team/app", b"{}").await;
    let descriptor = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 9,
    });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": vec![descriptor; 2000],
    }))
    .expect("json");
    let image = digest_of(&manifest);
    let (app, counting) = counting_lookups(&reg);
    let put = |uri: String, media_type: &'static str, body: Vec<u8>| {
        let app = app.clone();
        async move {
            send(
                &app,
                Method::PUT,
                &uri,
                &[("content-type", media_type)],
                Body::from(body),
            )
            .await
        }
    };
    // An index naming that manifest as many times.
    let entry = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": image, "size": 1});
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": vec![entry; 2000],
    }))
    .expect("json");
    for (tag, media_type, body, named) in [
        ("one", OCI_MANIFEST, manifest, "one layer"),
        ("all", OCI_INDEX, index, "one child"),
    ] {
        let r = put(format!("/v2/team/app/manifests/{tag}"), media_type, body).await;
        let answer = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, StatusCode::CREATED, "{answer}");
        let lookups = counting.meta_lookups.swap(0, SeqCst);
        assert!(
            lookups <= 40,
            "2000 copies of {named} made {lookups} lookups"
        );
    }

    // A repeated blob with two sizes is still refused.
    let twice = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 9},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 10},
        ],
    }))
    .expect("json");
    let r = put("/v2/team/app/manifests/bad".into(), OCI_MANIFEST, twice).await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
}

/// A mount without `from` may be sent by anyone allowed to push, and its search for a source
/// repository must not cost a storage call per repository (on S3 each is a request): with 400
/// repositories, the search stops within its budget, and the mount is an ordinary upload when
/// it found no source within it.
async fn a_mount_without_from_looks_through_a_bounded_number_of_repositories() {
    let reg = registry();
    // Listed first and walked last (the walk takes the last name listed first).
    let digest = reg.push_blob("aaa/holder", b"the shared layer").await;
    let other = Digest::parse(&digest_of(b"another layer")).expect("digest");
    for i in 0..400 {
        let repo = RepoName::parse(&format!("filler/r{i:03}")).expect("name");
        reg.storage
            .meta_put(
                &format!("repositories/{repo}/_layers/sha256/{}", other.hex()),
                Bytes::from(other.to_string()),
            )
            .await
            .expect("link");
    }
    let (app, counting) = counting_lookups(&reg);

    let r = send(
        &app,
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={digest}"),
        &[],
        Body::empty(),
    )
    .await;
    let lookups = counting.meta_lookups.swap(0, SeqCst);
    // 256 for the search, a few for the mount or the upload session.
    assert!(
        lookups <= 270,
        "a mount without `from` made {lookups} lookups"
    );
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "no source within the budget"
    );
    assert!(r.header("location").starts_with("/v2/dst/blobs/uploads/"));

    // With `from`, the same mount looks at that repository only.
    let r = send(
        &app,
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={digest}&from=aaa/holder"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let lookups = counting.meta_lookups.swap(0, SeqCst);
    assert!(lookups <= 10, "a mount with `from` made {lookups} lookups");
}

/// Records what was asked, refuses anything touching `secret/` and anonymous requests.
#[derive(Default)]
struct Recorder {
    asked: Mutex<Vec<Vec<Access>>>,
}

impl Authorizer for Recorder {
    fn authorize<'a>(
        &'a self,
        headers: &'a HeaderMap,
        wanted: &'a [Access],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = AuthOutcome> + Send + 'a>> {
        self.asked.lock().expect("lock").push(wanted.to_vec());
        let outcome = if !headers.contains_key("authorization") {
            AuthOutcome::Challenge {
                www_authenticate: "Basic realm=\"test\"".to_string(),
                error: AuthErrorCode::Unauthorized,
                why: String::new(),
            }
        } else if wanted.iter().any(|a| a.name.starts_with("secret")) {
            AuthOutcome::Challenge {
                www_authenticate: String::new(),
                error: AuthErrorCode::Denied,
                why: String::new(),
            }
        } else {
            AuthOutcome::Allowed(Identity {
                subject: Some("alice".to_string()),
            })
        };
        Box::pin(std::future::ready(outcome))
    }
}

async fn every_request_is_authorized_with_the_scopes_it_implies() {
    let recorder = Arc::new(Recorder::default());
    let reg = registry_with(recorder.clone());
    let auth = [("authorization", "Basic YWxpY2U6eA==")];

    let r = reg.get("/v2/").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"test\"");
    let r = reg.get("/v2/secret/app/tags/list").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "anonymous gets a challenge, not a 404"
    );
    let r = reg
        .call(Method::GET, "/v2/secret/app/tags/list", &auth, b"")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    assert_eq!(r.header("www-authenticate"), "");

    recorder.asked.lock().expect("lock").clear();
    let digest = digest_of(b"x");
    let repo = |name: &str, actions: &[Action]| Access {
        kind: ResourceKind::Repository,
        name: name.into(),
        actions: actions.to_vec(),
    };
    let cases: Vec<(Method, String, Vec<Vec<Access>>)> = vec![
        (Method::GET, "/v2/".into(), vec![vec![]]),
        (
            Method::GET,
            "/v2/_catalog".into(),
            vec![vec![Access {
                kind: ResourceKind::Registry,
                name: "catalog".into(),
                actions: vec![Action::All],
            }]],
        ),
        (
            Method::GET,
            "/v2/a/b/tags/list".into(),
            vec![vec![repo("a/b", &[Action::Pull])]],
        ),
        (
            Method::HEAD,
            "/v2/a/manifests/t".into(),
            vec![vec![repo("a", &[Action::Pull])]],
        ),
        (
            Method::PUT,
            "/v2/a/manifests/t".into(),
            vec![vec![repo("a", &[Action::Pull, Action::Push])]],
        ),
        (
            Method::DELETE,
            "/v2/a/manifests/t".into(),
            vec![vec![repo("a", &[Action::Delete])]],
        ),
        (
            Method::GET,
            format!("/v2/a/blobs/{digest}"),
            vec![vec![repo("a", &[Action::Pull])]],
        ),
        (
            Method::DELETE,
            format!("/v2/a/blobs/{digest}"),
            vec![vec![repo("a", &[Action::Delete])]],
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".into(),
            vec![vec![repo("a", &[Action::Pull, Action::Push])]],
        ),
        (
            Method::GET,
            format!("/v2/a/referrers/{digest}"),
            vec![vec![repo("a", &[Action::Pull])]],
        ),
        (
            Method::POST,
            format!("/v2/a/blobs/uploads/?mount={digest}&from=b"),
            vec![
                vec![repo("a", &[Action::Pull, Action::Push])],
                vec![repo("b", &[Action::Pull])],
            ],
        ),
    ];
    // Set up content behind the authorizer's back.
    let open = app_with(&reg.config, Arc::new(AllowAll));
    for repo in ["b", "secretsrc"] {
        let r = send(
            &open,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[],
            Body::from("x"),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    recorder.asked.lock().expect("lock").clear();
    for (method, path, expected) in cases {
        let r = reg.call(method.clone(), &path, &auth, b"").await;
        assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let asked = std::mem::take(&mut *recorder.asked.lock().expect("lock"));
        assert_eq!(asked, expected, "{method} {path}");
    }

    // A mount from a repository the caller may not pull from is a plain upload.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/c/blobs/uploads/?mount={digest}&from=secretsrc"),
            &auth,
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

async fn metrics_count_requests() {
    let reg = registry();
    reg.get("/v2/").await;
    reg.get("/v2/x/tags/list").await;
    let m = reg.get("/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("wharf_registry_http_requests_total{method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wharf_registry_http_requests_total{method=\"GET\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wharf_registry_http_request_duration_seconds_count 2"),
        "{text}"
    );
}

on_each_backend!(
    ping_answers_with_the_api_version,
    monolithic_blob_push_then_head_get_and_ranges,
    blob_errors_are_4xx_with_oci_codes,
    repository_names_are_validated,
    post_put_and_chunked_uploads,
    manifests_by_tag_and_digest,
    invalid_manifests_are_refused_with_the_right_code,
    tags_and_catalog_paginate_with_link_headers,
    deletes_of_tags_manifests_and_blobs,
    referrers_with_subject_and_artifact_type_filter,
    cross_repository_mount,
    a_mount_without_from_looks_through_a_bounded_number_of_repositories,
    a_manifest_naming_one_blob_many_times_checks_it_once,
    every_request_is_authorized_with_the_scopes_it_implies,
    metrics_count_requests,
);

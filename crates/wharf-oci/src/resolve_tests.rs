//! Resolution tests: precedence, matching, helpers, malformed input, explanations, secrets.

use base64::Engine as _;

use super::*;
use crate::helper::tests::write_helper;
use crate::{Secret, resolve, secrets_in_auth_config};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `{"auths": {key: {"auth": base64("<user>:<pass>")}}}` for each (key, user).
fn auths(entries: &[(&str, &str)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(key, user)| {
            format!(
                r#""{key}": {{"auth": "{}"}}"#,
                b64(&format!("{user}:pw-{user}"))
            )
        })
        .collect();
    format!(r#"{{"auths": {{{}}}}}"#, body.join(", "))
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("valid image")
}

struct Env {
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
    sources: CredentialSources,
}

impl Env {
    fn new() -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        let bin = tempfile::tempdir().expect("tempdir");
        let sources = CredentialSources {
            home_dir: Some(home.path().to_owned()),
            path: Some(bin.path().as_os_str().to_owned()),
            ..CredentialSources::default()
        };
        Env { home, bin, sources }
    }
    fn job(mut self, json: &str) -> Self {
        self.sources.job_auth_config = Some(Secret(json.into()));
        self
    }
    fn runner(mut self, json: &str) -> Self {
        self.sources.runner_auth_config = Some(Secret(json.into()));
        self
    }
    fn config_path(&self) -> std::path::PathBuf {
        self.home.path().join(".docker/config.json")
    }
    fn file(self, json: &str) -> Self {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, json).expect("write");
        self
    }
    fn helper(self, name: &str, script: &str) -> Self {
        write_helper(self.bin.path(), name, script);
        self
    }
    fn resolve(&self, img: &str) -> Resolution {
        let r = resolve(&image(img), &self.sources);
        // Whatever happened, no secret may appear in the reports or warnings.
        let text = format!("{:?} {:?}", r.tried, r.warnings);
        for secret in ["pw-", "hunter2", "s3cret"] {
            assert!(!text.contains(secret), "secret in {text}");
        }
        r
    }
}

/// (source, key, username) of what was found.
fn found(r: &Resolution) -> Option<(String, String, String)> {
    r.found.as_ref().map(|f| {
        (
            f.source.clone(),
            f.key.clone(),
            f.auth.username.clone().unwrap_or_default(),
        )
    })
}

fn user_of(r: &Resolution) -> Option<String> {
    found(r).map(|(_, _, u)| u)
}

#[test]
fn matching_longest_path_ports_and_docker_hub_aliases() {
    let doc = auths(&[
        ("r.io", "host"),
        ("r.io/team", "team"),
        ("r.io/team/app", "app"),
        ("r.io:5000", "port5000"),
        ("https://index.docker.io/v1/", "hub"),
        ("docker.io/acme", "acme"),
        ("http://q.io:443/v2/", "q443"),
    ]);
    let env = Env::new().job(&doc);
    let cases = [
        ("r.io/team/app:1", Some("app")),
        ("r.io/team/other", Some("team")),
        ("r.io/team/app/sub", Some("app")),
        ("r.io/teamwork/x", Some("host")),
        ("r.io/x", Some("host")),
        ("r.io:5000/team/app", Some("port5000")),
        ("r.io:443/x", None),
        ("q.io/x", None),
        ("q.io:443/x", Some("q443")),
        ("busybox", Some("hub")),
        ("index.docker.io/library/busybox", Some("hub")),
        ("acme/tool", Some("acme")),
        ("other.io/x", None),
    ];
    for (img, want) in cases {
        assert_eq!(user_of(&env.resolve(img)).as_deref(), want, "{img}");
    }
    let r = env.resolve("r.io/team/app");
    assert_eq!(
        found(&r),
        Some((
            "$DOCKER_AUTH_CONFIG".into(),
            "r.io/team/app".into(),
            "app".into()
        ))
    );
    let f = r.found.expect("found");
    assert_eq!(f.auth.password.as_deref(), Some("pw-app"));
    assert_eq!(f.auth.server_address, "r.io/team/app");
}

#[test]
fn each_docker_hub_spelling_matches() {
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "HTTPS://INDEX.DOCKER.IO",
    ] {
        let env = Env::new().job(&auths(&[(key, "hub")]));
        assert_eq!(
            user_of(&env.resolve("busybox")).as_deref(),
            Some("hub"),
            "{key}"
        );
        assert_eq!(
            user_of(&env.resolve("docker.io/u/app")).as_deref(),
            Some("hub"),
            "{key}"
        );
    }
}

#[test]
fn port_mismatch_is_explained() {
    let env = Env::new().job(&auths(&[("r.io:5000", "u")]));
    let r = env.resolve("r.io/app");
    assert!(r.found.is_none());
    let outcome = &r.tried[0].outcome;
    assert!(
        outcome.contains("no entry for r.io/app (has: r.io:5000)"),
        "{outcome}"
    );
    assert!(outcome.contains("ports must match exactly"), "{outcome}");
}

#[test]
fn job_config_replaces_runner_config_whole() {
    let env = Env::new()
        .runner(&auths(&[("r.io", "runner")]))
        .job(&auths(&[("other.io", "job")]));
    let r = env.resolve("r.io/app");
    assert!(r.found.is_none(), "never merged");
    assert_eq!(r.tried[0].source, "$DOCKER_AUTH_CONFIG");
    assert_eq!(
        r.tried[1].source,
        "$DOCKER_AUTH_CONFIG (wharf's environment)"
    );
    assert!(
        r.tried[1].outcome.contains("replaces it whole"),
        "{:?}",
        r.tried
    );

    let env = Env::new().runner(&auths(&[("r.io", "runner")]));
    assert_eq!(
        found(&env.resolve("r.io/app")),
        Some((
            "$DOCKER_AUTH_CONFIG (wharf's environment)".into(),
            "r.io".into(),
            "runner".into()
        ))
    );
    // A blank job value does not replace anything.
    let env = Env::new().runner(&auths(&[("r.io", "runner")])).job("  \n");
    assert_eq!(user_of(&env.resolve("r.io/app")).as_deref(), Some("runner"));
}

#[test]
fn job_config_beats_config_file_but_path_specificity_comes_first() {
    let env = Env::new()
        .job(&auths(&[("r.io", "job")]))
        .file(&auths(&[("r.io", "file"), ("r.io/team", "file-team")]));
    assert_eq!(user_of(&env.resolve("r.io/app")).as_deref(), Some("job"));
    let r = env.resolve("r.io/team/app");
    assert_eq!(user_of(&r).as_deref(), Some("file-team"));
    assert_eq!(
        found(&r).map(|f| f.0),
        Some(env.config_path().display().to_string())
    );
    // The job source is reported as having lost to a more specific key.
    assert!(
        r.tried[0].outcome.contains("more specific r.io/team"),
        "{:?}",
        r.tried
    );

    let r = env.resolve("r.io/app");
    let file_report = r
        .tried
        .iter()
        .find(|t| t.source == env.config_path().display().to_string())
        .expect("file tried");
    assert!(
        file_report.outcome.contains("comes first"),
        "{file_report:?}"
    );
}

#[test]
fn config_file_locations() {
    // $DOCKER_CONFIG replaces ~/.docker.
    let env = Env::new().file(&auths(&[("r.io", "home")]));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.json"),
        auths(&[("r.io", "dockerconfig")]),
    )
    .expect("w");
    let mut sources = env.sources.clone();
    sources.docker_config_dir = Some(dir.path().to_owned());
    let r = resolve(&image("r.io/a"), &sources);
    assert_eq!(user_of(&r).as_deref(), Some("dockerconfig"));
    assert_eq!(
        r.found.expect("found").source,
        dir.path().join("config.json").display().to_string()
    );

    // ~/.dockercfg (legacy format, no `auths` wrapper) only when config.json is missing.
    let env = Env::new();
    let legacy = format!(r#"{{"r.io": {{"auth": "{}"}}}}"#, b64("legacy:pw-legacy"));
    std::fs::write(env.home.path().join(".dockercfg"), &legacy).expect("write");
    let r = env.resolve("r.io/a");
    assert_eq!(user_of(&r).as_deref(), Some("legacy"));
    assert!(r.tried.iter().any(|t| t.outcome == "file not found"));
    let env = env.file(&auths(&[("other.io", "x")]));
    assert_eq!(user_of(&env.resolve("r.io/a")), None);

    // No HOME, no DOCKER_CONFIG.
    let r = resolve(&image("r.io/a"), &CredentialSources::default());
    assert!(r.found.is_none());
    assert_eq!(r.tried.len(), 3);
    assert!(r.tried[2].outcome.contains("HOME"));
}

#[test]
fn cred_helpers_beat_creds_store_beat_auths() {
    let env = Env::new()
        .helper(
            "one",
            r#"read url; echo "{\"ServerURL\":\"$url\",\"Username\":\"from-one\",\"Secret\":\"pw-one\"}""#,
        )
        .helper(
            "store",
            r#"case "$1" in
  list) echo '{"https://r.io":"from-store","s.io":"from-store"}' ;;
  get) read url; echo "{\"ServerURL\":\"$url\",\"Username\":\"from-store\",\"Secret\":\"pw-store\"}" ;;
esac"#,
        );
    let doc = format!(
        r#"{{"auths": {{"r.io": {{"auth": "{a}"}}, "s.io": {{"auth": "{a}"}}, "t.io": {{"auth": "{a}"}}}},
            "credsStore": "store", "credHelpers": {{"r.io": "one"}}}}"#,
        a = b64("from-auths:pw-auths")
    );
    let env = env.job(&doc);
    let r = env.resolve("r.io/app");
    assert_eq!(
        found(&r),
        Some((
            "docker-credential-one (credHelpers in $DOCKER_AUTH_CONFIG)".into(),
            "r.io".into(),
            "from-one".into()
        ))
    );
    assert!(
        r.tried
            .iter()
            .any(|t| t.source.starts_with("docker-credential-one"))
    );
    let r = env.resolve("s.io/app");
    assert_eq!(
        found(&r).map(|f| (f.0, f.2)),
        Some((
            "docker-credential-store (credsStore in $DOCKER_AUTH_CONFIG)".into(),
            "from-store".into()
        ))
    );
    assert_eq!(
        user_of(&env.resolve("t.io/app")).as_deref(),
        Some("from-auths")
    );
}

#[test]
fn helper_token_username_means_identity_token() {
    let env = Env::new()
        .helper(
            "tok",
            r#"read url; echo '{"ServerURL":"x","Username":"<token>","Secret":"s3cret-refresh"}'"#,
        )
        .file(r#"{"credHelpers": {"r.io": "tok"}}"#);
    let r = env.resolve("r.io/app");
    let f = r.found.expect("found");
    assert_eq!(f.auth.identity_token.as_deref(), Some("s3cret-refresh"));
    assert_eq!(f.auth.username, None);
    assert_eq!(
        f.source,
        format!(
            "docker-credential-tok (credHelpers in {})",
            env.config_path().display()
        )
    );
    assert!(!format!("{f:?}").contains("s3cret"));
}

#[test]
fn failing_or_missing_helper_drops_that_source_with_a_warning() {
    let env = Env::new()
        .helper("broken", "echo 'keychain locked for pw-job' >&2; exit 2")
        .job(&format!(
            r#"{{"credHelpers": {{"r.io": "broken"}}, "auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            b64("job:pw-job")
        ))
        .file(&auths(&[("r.io", "file")]));
    let mut sources = env.sources.clone();
    let r = env.resolve("r.io/app");
    // The job document is dropped whole (its auths too), so the file is used.
    assert_eq!(user_of(&r).as_deref(), Some("file"));
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let w = &r.warnings[0];
    assert!(
        w.contains("docker-credential-broken get failed (exit status: 2)"),
        "{w}"
    );
    assert!(w.contains("keychain locked"), "{w}");
    assert!(w.starts_with("$DOCKER_AUTH_CONFIG: "), "{w}");
    assert!(
        w.contains("keychain locked for [MASKED] (named by `credHelpers`)"),
        "{w}"
    );
    assert!(w.ends_with("ignoring all credentials in it"), "{w}");
    assert!(r.tried[0].outcome.starts_with("ignored:"), "{:?}", r.tried);

    // credsStore whose helper is not installed (a config copied from Docker Desktop).
    sources.job_auth_config = Some(Secret(
        r#"{"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "desktop"}"#.into(),
    ));
    let r = resolve(&image("busybox"), &sources);
    assert!(r.found.is_none());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("docker-credential-desktop not found on PATH")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn helper_not_found_answer_falls_through_to_auths() {
    let env = Env::new()
        .helper(
            "empty",
            "echo 'credentials not found in native keychain'; exit 1",
        )
        .job(&format!(
            r#"{{"credHelpers": {{"r.io": "empty"}}, "auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            b64("job:pw-job")
        ));
    let r = env.resolve("r.io/app");
    assert_eq!(user_of(&r).as_deref(), Some("job"));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn malformed_documents_are_reported_not_ignored() {
    let cases = [
        (
            r#"{"credHelpers": "ecr-login"}"#,
            "`credHelpers` must be an object",
            "line 1 column 17",
        ),
        (
            r#"{"auths": {"r.io": {"auth": "s3cret"}"#,
            "invalid JSON",
            "line 1",
        ),
        (
            "{\n\"auths\": [\"s3cret\"]}",
            "`auths` must be an object",
            "line 2 column 10",
        ),
    ];
    for (doc, what, position) in cases {
        let env = Env::new().job(doc).file(&auths(&[("r.io", "file")]));
        let r = env.resolve("r.io/app");
        assert_eq!(user_of(&r).as_deref(), Some("file"), "{doc}");
        assert!(r.tried[0].outcome.contains(what), "{:?}", r.tried);
        let w = r.warnings.join("\n");
        assert!(
            w.contains("$DOCKER_AUTH_CONFIG is not a valid auth config"),
            "{w}"
        );
        assert!(w.contains(what) && w.contains(position), "{w}");
    }
    // A bad entry for another registry drops that entry only, with a warning.
    let doc = format!(
        r#"{{"auths": {{"bad.io": {{"auth": "s3cret!"}}, "r.io": {{"auth": "{}"}}}}}}"#,
        b64("job:pw-job")
    );
    let r = Env::new().job(&doc).resolve("r.io/app");
    assert_eq!(user_of(&r).as_deref(), Some("job"));
    assert!(
        r.warnings[0].contains("`auths` entry `bad.io` ignored"),
        "{:?}",
        r.warnings
    );
    // A trailing newline from `echo | base64` works, with a warning.
    let doc = format!(
        r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
        b64("echo:pw-echo\n")
    );
    let r = Env::new().job(&doc).resolve("r.io/app");
    assert_eq!(
        r.found.expect("found").auth.password.as_deref(),
        Some("pw-echo")
    );
    assert!(r.warnings[0].contains("printf"), "{:?}", r.warnings);
}

#[test]
fn unreadable_and_empty_config_files() {
    let env = Env::new().file("");
    let r = env.resolve("r.io/a");
    assert!(r.tried[2].outcome.starts_with("empty"), "{:?}", r.tried);
    let env = Env::new();
    std::fs::create_dir_all(env.config_path()).expect("a directory where the file should be");
    let r = env.resolve("r.io/a");
    assert!(
        r.tried[2].outcome.starts_with("unreadable"),
        "{:?}",
        r.tried
    );
    assert_eq!(r.warnings.len(), 1);
}

#[test]
fn empty_entries_do_not_match() {
    let env = Env::new()
        .job(r#"{"auths": {"r.io": {}}}"#)
        .file(&auths(&[("r.io", "file")]));
    let r = env.resolve("r.io/a");
    assert_eq!(user_of(&r).as_deref(), Some("file"));
    assert!(
        r.tried[0].outcome.contains("no credentials"),
        "{:?}",
        r.tried
    );
}

#[test]
fn explain_missing_lists_sources_and_the_fix() {
    let env = Env::new().job(&auths(&[("other.io", "x")]));
    let img = image("r.example.com:5000/team/app:1.0");
    let r = resolve(&img, &env.sources);
    let text = r.explain_missing(&img);
    for needle in [
        "r.example.com:5000",
        "r.example.com:5000/team/app:1.0",
        "$DOCKER_AUTH_CONFIG: no entry for r.example.com:5000/team/app (has: other.io)",
        "$DOCKER_AUTH_CONFIG (wharf's environment): not set",
        &format!("{}: file not found", env.config_path().display()),
        r#"{"auths": {"r.example.com:5000": {"auth": "<base64 of username:password>"}}}"#,
        "printf '%s' 'username:password' | base64",
        "not echo",
        "wharf login r.example.com:5000 -u <username> --password-stdin",
        "--print-auth-config",
        "Settings -> CI/CD -> Variables",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("pw-"));
    let hub = image("busybox");
    let text = resolve(&hub, &env.sources).explain_missing(&hub);
    assert!(
        text.contains(r#""https://index.docker.io/v1/": {"auth""#),
        "{text}"
    );
    assert!(text.contains("wharf login docker.io"), "{text}");
}

#[test]
fn secrets_in_auth_config_finds_everything() {
    let doc = format!(
        r#"{{"auths": {{
            "a.io": {{"auth": "{}"}},
            "b.io": {{"username": "u", "password": "explicit-pw"}},
            "c.io": {{"auth": "{}", "identitytoken": "refresh-tok"}},
            "d.io": {{"registrytoken": "bearer-tok", "email": "not@secret"}}
        }}}}"#,
        b64("alice:decoded-pw"),
        b64("carol:"),
    );
    let secrets = secrets_in_auth_config(&doc);
    for want in [
        b64("alice:decoded-pw").as_str(),
        "alice:decoded-pw",
        "decoded-pw",
        "explicit-pw",
        "refresh-tok",
        "bearer-tok",
        b64("carol:").as_str(),
    ] {
        assert!(
            secrets.iter().any(|s| s == want),
            "{want} not in {secrets:?}"
        );
    }
    assert!(
        !secrets
            .iter()
            .any(|s| s == "u" || s == "not@secret" || s.is_empty())
    );
    // The echo newline: both the exact and the trimmed password are masked.
    let echo = format!(r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#, b64("u:pw\n"));
    let secrets = secrets_in_auth_config(&echo);
    assert!(secrets.contains(&"pw".to_owned()) && secrets.contains(&"pw\n".to_owned()));
    // Invalid JSON still yields the obvious values.
    let broken = format!(
        r#"{{"auths": {{"r": {{"auth": "{}", "password": "p2" "#,
        b64("u:pw1")
    );
    let secrets = secrets_in_auth_config(&broken);
    assert!(
        secrets.contains(&"pw1".to_owned()) && secrets.contains(&"p2".to_owned()),
        "{secrets:?}"
    );
    assert!(secrets_in_auth_config("not json").is_empty());
}

#[test]
fn debug_output_never_contains_secrets() {
    let doc = format!(
        r#"{{"auths": {{"r.io": {{"auth": "{}", "identitytoken": "s3cret-id", "registrytoken": "s3cret-reg"}}}}}}"#,
        b64("u:s3cret-pw")
    );
    let env = Env::new().job(&doc);
    let r = env.resolve("r.io/a");
    let config = AuthConfig::parse(&doc).expect("valid");
    let found = r.found.clone().expect("found");
    let dumps = [
        format!("{r:?}"),
        format!("{found:?}"),
        format!("{:?}", found.auth),
        format!("{:?}", env.sources),
        format!("{config:?}"),
        format!("{:?}", Secret("s3cret-x".into())),
    ];
    for dump in dumps {
        assert!(!dump.contains("s3cret"), "{dump}");
        assert!(!dump.contains(&b64("u:s3cret-pw")), "{dump}");
    }
    assert_eq!(found.auth.secrets().len(), 3);
}

fn payload(entries: &[(&str, &str)]) -> Option<Vec<crate::RegistryCredential>> {
    Some(
        entries
            .iter()
            .map(|(url, user)| crate::RegistryCredential {
                url: (*url).into(),
                username: (*user).into(),
                password: Secret(format!("pw-{user}")),
            })
            .collect(),
    )
}

#[test]
fn gitlab_job_credentials_come_last_and_are_listed() {
    // Alone, they are used, and named as their own source.
    let mut env = Env::new();
    env.sources.job_credentials = payload(&[("gitlab.example.com:5050", "gitlab-ci-token")]);
    let r = env.resolve("gitlab.example.com:5050/group/app:1");
    assert_eq!(
        found(&r),
        Some((
            crate::JOB_CREDENTIALS_SOURCE.to_string(),
            "gitlab.example.com:5050".to_string(),
            "gitlab-ci-token".to_string()
        ))
    );
    // DOCKER_AUTH_CONFIG and the user's config file come before them for the same key.
    let mut env = Env::new().job(&auths(&[("gitlab.example.com:5050", "job")]));
    env.sources.job_credentials = payload(&[("gitlab.example.com:5050", "gitlab-ci-token")]);
    assert_eq!(
        user_of(&env.resolve("gitlab.example.com:5050/app")).as_deref(),
        Some("job")
    );
    let mut env = Env::new().file(&auths(&[("gitlab.example.com:5050", "file")]));
    env.sources.job_credentials = payload(&[("gitlab.example.com:5050", "gitlab-ci-token")]);
    let r = env.resolve("gitlab.example.com:5050/app");
    assert_eq!(user_of(&r).as_deref(), Some("file"));
    assert!(
        r.tried
            .iter()
            .any(|t| t.source == crate::JOB_CREDENTIALS_SOURCE),
        "{:?}",
        r.tried
    );
    // For another registry they are not used, and the explanation lists them as tried.
    let r = env.resolve("other.example.com/app");
    assert!(r.found.is_none());
    assert!(
        r.explain_missing(&image("other.example.com/app"))
            .contains(crate::JOB_CREDENTIALS_SOURCE)
    );
}

#[test]
fn job_credentials_are_listed_only_for_runner_jobs() {
    let env = Env::new();
    let r = env.resolve("r.io/app");
    assert!(
        !r.tried
            .iter()
            .any(|t| t.source == crate::JOB_CREDENTIALS_SOURCE)
    );
    let mut env = Env::new();
    env.sources.job_credentials = Some(Vec::new());
    let r = env.resolve("r.io/app");
    let listed = r
        .tried
        .iter()
        .find(|t| t.source == crate::JOB_CREDENTIALS_SOURCE)
        .expect("listed");
    assert_eq!(listed.outcome, "none in this job");
    // Debug never shows the password.
    let text = format!("{:?}", payload(&[("r.io", "u")]));
    assert!(!text.contains("pw-u"), "{text}");
}

//! `cache:` and `artifacts:` (with `reports:`).

use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Map, Node, Value};

const CACHE_WHEN_CHOICES: &[(&str, CacheWhen)] = &[
    ("on_success", CacheWhen::OnSuccess),
    ("on_failure", CacheWhen::OnFailure),
    ("always", CacheWhen::Always),
];

pub(crate) fn caches(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Cache> {
    match &n.value {
        // `[@config].flatten`, as GitLab reads it: `cache: [*cached_go]` where the alias is a
        // list of caches is that list.
        Value::Seq(_) => {
            let items = flattened(n);
            // `Caches::MULTIPLE_CACHE_LIMIT`.
            if items.len() > 4 {
                d.error(
                    &n.span,
                    format!(
                        "{what} lists {} caches; GitLab creates no more than 4",
                        items.len()
                    ),
                );
            }
            items
                .into_iter()
                .filter_map(|i| cache(i, what, unsupported, d))
                .collect()
        }
        _ => cache(n, what, unsupported, d).into_iter().collect(),
    }
}

/// A cache key or prefix as GitLab's `KeyValidator` takes it: a string that, URL-decoded
/// (`CGI.unescape`), holds no `/` and is not `.` or `..` (it names a folder on the runner).
fn cache_key(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let key = typed_string(n, what, d)?;
    let decoded = url_decoded(&key);
    let problem = if decoded.contains('/') {
        "cannot contain the \"/\" character"
    } else if decoded == "." || decoded == ".." {
        "cannot be \".\" or \"..\""
    } else {
        return Some(key);
    };
    d.error(
        &n.span,
        format!("{what} `{key}` {problem} (GitLab refuses it)"),
    )
    .help("use `-` or `_` between the parts of a key: `$CI_JOB_NAME-$CI_COMMIT_REF_SLUG`");
    None
}

/// `%XX` escapes decoded and `+` as a space, as Ruby's `CGI.unescape` reads them.
fn url_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cache(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Cache> {
    let m = match &n.value {
        Value::Map(m) => m,
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a map or a list of maps, found {}", n.kind()),
            );
            return None;
        }
    };
    check_keys(
        m,
        what,
        &[
            "key",
            "paths",
            "untracked",
            "policy",
            "when",
            "fallback_keys",
            "unprotect",
        ],
        d,
    );
    let mut c = Cache {
        key: "default".to_string(),
        key_files: Vec::new(),
        fallback_keys: Vec::new(),
        paths: Vec::new(),
        untracked: false,
        policy: CachePolicy::PullPush,
        when: CacheWhen::OnSuccess,
        span: n.span.clone(),
    };
    for (k, e) in set_entries(m) {
        let v = &e.value;
        let what = format!("{what} `{k}`");
        match k.as_str() {
            "key" => match &v.value {
                Value::Map(km) => {
                    check_keys(km, &what, &["files", "prefix"], d);
                    c.key = km
                        .get("prefix")
                        .filter(|p| !p.value.is_null())
                        .and_then(|p| cache_key(&p.value, &format!("{what} `prefix`"), d))
                        .unwrap_or_default();
                    match km.get("files") {
                        Some(f) => {
                            // `Files`: `array_of_strings`, one or two.
                            let what = format!("{what} `files`");
                            if let Some(files) = strict_string_list(&f.value, &what, d) {
                                if files.is_empty() || files.len() > 2 {
                                    d.error(
                                        &f.value.span,
                                        format!(
                                            "{what} must list one or two files, found {}",
                                            files.len()
                                        ),
                                    );
                                }
                                c.key_files = files;
                            }
                        }
                        None => {
                            d.error(&v.span, format!("{what} as a map needs `files`"));
                        }
                    }
                }
                _ => c.key = cache_key(v, &what, d).unwrap_or(c.key),
            },
            // GitLab's `Entry::Paths` and `ArrayOfStrings`: a list, never a lone string.
            "paths" => c.paths = strict_string_list(v, &what, d).unwrap_or_default(),
            "untracked" => c.untracked = boolean(v, &what, d).unwrap_or(false),
            "policy" => match &v.value {
                // `policy: $VAR` is expanded at run time by GitLab: not done yet.
                Value::Scalar(s) if s.text.starts_with('$') => {
                    unsupported.push(("cache:policy:variable".into(), e.key_span.clone()));
                }
                // `Cache`: `validates :policy, allow_blank: true`; the runner's default then.
                Value::Scalar(s) if s.text.is_empty() => {}
                _ => {
                    c.policy = one_of(
                        v,
                        &what,
                        &[
                            ("pull-push", CachePolicy::PullPush),
                            ("pull", CachePolicy::Pull),
                            ("push", CachePolicy::Push),
                        ],
                        d,
                    )
                    .unwrap_or(CachePolicy::PullPush);
                }
            },
            "when" => {
                c.when = one_of(v, &what, CACHE_WHEN_CHOICES, d).unwrap_or(CacheWhen::OnSuccess);
            }
            "fallback_keys" => {
                c.fallback_keys = strict_string_list(v, &what, d).unwrap_or_default();
                if c.fallback_keys.len() > 5 {
                    d.error(
                        &v.span,
                        format!("{what} lists more than 5 keys (GitLab's limit)"),
                    );
                }
            }
            "unprotect" => {
                // `entry :unprotect, Boolean`; recorded as unsupported once it is one.
                let valid = boolean(v, &what, d).is_some();
                unsupported.extend(valid.then(|| (format!("cache:{k}"), e.key_span.clone())));
            }
            _ => {}
        }
    }
    Some(c)
}

pub(crate) fn artifacts(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Artifacts> {
    let m = map(n, what, d)?;
    check_keys(
        m,
        what,
        &[
            "paths",
            "exclude",
            "untracked",
            "when",
            "name",
            "expire_in",
            "expose_as",
            "reports",
            "public",
            "access",
        ],
        d,
    );
    let mut a = Artifacts {
        paths: Vec::new(),
        exclude: Vec::new(),
        untracked: false,
        when: CacheWhen::OnSuccess,
        name: None,
        expire_in: None,
        reports_dotenv: Vec::new(),
        reports_other: Vec::new(),
        span: n.span.clone(),
    };
    for (k, e) in set_entries(m) {
        let v = &e.value;
        let what = format!("{what} `{k}`");
        match k.as_str() {
            // `validates :paths / :exclude, array_of_strings: true`.
            "paths" => a.paths = strict_string_list(v, &what, d).unwrap_or_default(),
            "exclude" => a.exclude = strict_string_list(v, &what, d).unwrap_or_default(),
            "untracked" => a.untracked = boolean(v, &what, d).unwrap_or(false),
            "when" => {
                a.when = one_of(v, &what, CACHE_WHEN_CHOICES, d).unwrap_or(CacheWhen::OnSuccess);
            }
            // `Artifacts`: `validates :name, type: String`.
            "name" => a.name = typed_string(v, &what, d),
            // `validates :expire_in, duration:`, which takes text only.
            "expire_in" => {
                a.expire_in = typed_string_as(v, &what, "a duration such as `1 week`", d);
            }
            "reports" => reports(v, &what, &mut a, d),
            "expose_as" | "public" | "access" => {
                unsupported.push((format!("artifacts:{k}"), e.key_span.clone()));
            }
            _ => {}
        }
    }
    artifacts_exposure(m, what, d);
    Some(a)
}

/// GitLab's `Artifacts` checks of what wharf records but does not serve: `access` among none,
/// developer, all, and not beside `public` (a boolean); `expose_as` a name of word characters,
/// `-` and spaces (at most 100), with `paths:` and no `*` in them.
fn artifacts_exposure(m: &Map, what: &str, d: &mut Diags) {
    if let Some(e) = set_entry(m, "access") {
        let choices = [("none", ()), ("developer", ()), ("all", ())];
        one_of(&e.value, &format!("{what} `access`"), &choices, d);
        if let Some(public) = m.get("public") {
            d.error(
                &public.key_span,
                format!("{what} has both `access` and `public` (GitLab refuses them together)"),
            )
            .help("keep `access:`, which replaces `public:`");
        }
    }
    if let Some(e) = set_entry(m, "public") {
        boolean(&e.value, &format!("{what} `public`"), d);
    }
    let Some(e) = set_entry(m, "expose_as") else {
        return;
    };
    let label = format!("{what} `expose_as`");
    if let Some(name) = typed_string(&e.value, &label, d) {
        let mut chars = name.chars();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let valid = chars.next().is_some_and(word)
            && chars.all(|c| word(c) || c == '-' || c == ' ')
            && name.chars().count() <= 100;
        if !valid {
            d.error(
                &e.value.span,
                format!("{label} `{name}` can contain only letters, digits, '-', '_' and spaces (at most 100), as GitLab requires"),
            );
        }
    }
    match set_entry(m, "paths") {
        None => {
            d.error(
                &e.key_span,
                format!("{label} needs `paths:` (GitLab: \"paths can't be blank\")"),
            );
        }
        Some(p) => {
            if let Value::Seq(items) = &p.value.value {
                for item in items {
                    if matches!(&item.value, Value::Scalar(s) if s.text.contains('*')) {
                        d.error(
                            &item.span,
                            format!("{what} `paths` can't contain '*' when used with `expose_as` (GitLab refuses it)"),
                        );
                    }
                }
            }
        }
    }
}

/// `artifacts: reports:`: `dotenv` files feed later jobs; the other reports' paths are kept with
/// the artifacts.
fn reports(n: &Node, what: &str, a: &mut Artifacts, d: &mut Diags) {
    let Some(m) = map(n, what, d) else {
        return;
    };
    // `cobertura:` left GitLab in 15.0 (now `coverage_report:`); older pipelines still write
    // it, so it stays readable, with a warning that GitLab refuses it now.
    let mut current = m.clone();
    if let Some(e) = current.shift_remove("cobertura") {
        d.warning(
            &e.key_span,
            format!("{what} `cobertura` was removed in GitLab 15.0, which refuses it now"),
        )
        .help("write `coverage_report: {coverage_format: cobertura, path: <file>}`");
        a.reports_other
            .extend(string_list(&e.value, &format!("{what} `cobertura`"), d).unwrap_or_default());
    }
    check_keys(&current, what, REPORT_KEYS, d);
    for (k, e) in set_entries(&current) {
        let v = &e.value;
        let what = format!("{what} `{k}`");
        match k.as_str() {
            "dotenv" => a
                .reports_dotenv
                .extend(string_list(v, &what, d).unwrap_or_default()),
            "coverage_report" => {
                if let Some(path) = coverage_report(v, &what, d) {
                    a.reports_other.push(path);
                }
            }
            _ if REPORT_KEYS.contains(&k.as_str()) => a
                .reports_other
                .extend(string_list(v, &what, d).unwrap_or_default()),
            _ => {}
        }
    }
}

/// GitLab's `Reports::ALLOWED_KEYS`.
const REPORT_KEYS: &[&str] = &[
    "junit",
    "codequality",
    "sast",
    "secret_detection",
    "dependency_scanning",
    "container_scanning",
    "dast",
    "performance",
    "browser_performance",
    "load_performance",
    "license_scanning",
    "metrics",
    "lsif",
    "dotenv",
    "terraform",
    "accessibility",
    "coverage_fuzzing",
    "api_fuzzing",
    "cluster_image_scanning",
    "requirements",
    "requirements_v2",
    "coverage_report",
    "cyclonedx",
    "annotations",
    "repository_xray",
];

/// `coverage_report: {coverage_format, path}` (`Reports::CoverageReport`: both present, the
/// format `cobertura` or `jacoco`, the path one string) -> its path.
fn coverage_report(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let m = map(n, what, d)?;
    check_keys(m, what, &["coverage_format", "path"], d);
    let format = match set_entry(m, "coverage_format") {
        Some(e) => one_of(
            &e.value,
            &format!("{what} `coverage_format`"),
            &[("cobertura", ()), ("jacoco", ())],
            d,
        ),
        None => {
            d.error(
                &n.span,
                format!("{what} needs `coverage_format` (cobertura or jacoco)"),
            );
            None
        }
    };
    let path = match set_entry(m, "path") {
        Some(e) => string(&e.value, &format!("{what} `path`"), d),
        None => {
            d.error(&n.span, format!("{what} needs `path`"));
            None
        }
    };
    format.and(path)
}

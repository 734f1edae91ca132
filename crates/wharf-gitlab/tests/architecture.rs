//! wharf-gitlab stays a one-way stack (ARCHITECTURE.md explains the modules): settings and
//! errors at the bottom, then the cache and versions, then the HTTP and git transports, then the
//! instance that resolves includes. The runner protocol sits beside them: its bodies on the
//! settings (tokens), the client, payload conversion and sources on the bodies, the trace on the
//! client. Checked by `wharf_testkit::layers`.

use std::path::Path;

const LAYERS: &[(&str, usize)] = &[
    ("error", 0),
    ("version", 0),
    ("settings", 1),
    ("cache", 1),
    ("http", 2),
    ("git", 2),
    ("instance", 3),
    ("runner::spec", 2),
    ("runner::client", 3),
    ("runner::job", 3),
    ("runner::source", 3),
    ("runner::trace", 4),
    ("runner", 5),
    ("", 6),
];

#[test]
fn wharf_gitlab_is_a_one_way_stack() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = wharf_testkit::layers::layer_violations(&src, LAYERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! wharf-registry's modules form a one-way stack: HTTP on top, then the operations, then storage,
//! with the vocabulary (names, limits, durations) at the ground. Fails on any import from a
//! higher layer and on any import cycle between files. ARCHITECTURE.md explains the layers; this
//! table is the rule, checked by `wharf_testkit::layers`.

use std::path::Path;

/// Each module's first path segment and its layer; a module may import only from its own layer
/// (without a cycle) or lower ones. "" is the crate root (lib.rs).
const LAYERS: &[(&str, usize)] = &[
    ("names", 0),
    ("duration", 0),
    ("limits", 1),
    ("client_addr", 1),
    ("metrics", 1),
    ("config", 2),
    ("storage", 2),
    ("auth", 2),
    ("backend", 2),
    ("error", 3),
    ("services", 4),
    ("throttle", 4),
    ("proxy", 4),
    ("routes", 5),
    ("conn", 5),
    ("body_pacing", 5),
    ("proxy_header", 5),
    ("drain", 5),
    ("server", 6),
    ("", 7),
];

#[test]
fn wharf_registry_is_a_one_way_stack() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = wharf_testkit::layers::layer_violations(&src, LAYERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

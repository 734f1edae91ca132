//! wharf-ci stays a one-way stack: no file imports one from a higher layer, and no two files
//! import each other (directly or around a loop). ARCHITECTURE.md explains the layers; this table
//! is the rule, checked by `wharf_testkit::layers` (the same checker as wharf-run's and
//! wharf-registry's, with its own tests).

use std::path::Path;

/// Each module's first path segment and its layer; a module may import only from its own layer
/// or lower ones. "" is the crate root (lib.rs).
const LAYERS: &[(&str, usize)] = &[
    ("span", 0),
    ("diagnostic", 0),
    ("suggest", 0),
    ("duration", 0),
    ("re2", 0),
    ("expr", 0),
    ("limits", 0),
    ("model", 1),
    ("evaluate", 1),
    ("yaml", 2),
    ("read", 3),
    ("keywords", 4),
    ("load", 5),
    ("", 6),
];

#[test]
fn wharf_ci_is_a_one_way_stack() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = wharf_testkit::layers::layer_violations(&src, LAYERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

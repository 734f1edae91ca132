//! wharf-run stays a one-way stack: no file imports one from a higher layer, and no two files
//! import each other (directly or around a loop). ARCHITECTURE.md explains the layers; this table
//! is the rule, checked by `wharf_testkit::layers`.

use std::path::Path;

/// Each module's first path segment and its layer; a module may import only from its own layer
/// or lower ones. "" is the crate root (lib.rs). Following one job's variables reads top-down:
/// pipeline -> job -> executor -> services/engine.
const LAYERS: &[(&str, usize)] = &[
    // Foundations: no imports inside the crate.
    ("vars", 0),
    ("engine", 0),
    ("files", 0),
    ("git", 0),
    ("scheduler", 0),
    ("script", 0),
    ("mask", 1),
    ("predefined", 1),
    ("rules_eval", 1),
    ("log", 2),
    ("plan", 2),
    ("report", 3),
    ("cache", 3),
    ("options", 3),
    ("transfer", 3),
    ("failure", 4),
    ("services", 5),
    ("artifacts", 5),
    ("executor", 6),
    ("job", 7),
    ("pipeline", 8),
    ("", 9),
];

#[test]
fn wharf_run_is_a_one_way_stack() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = wharf_testkit::layers::layer_violations(&src, LAYERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

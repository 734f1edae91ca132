//! What several test files share: an in-memory project.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use wharf_ci::Loader;

/// A project held in memory: path -> content. It can list its files (for `include` wildcards
/// and `rules:exists`).
pub struct Mem(pub HashMap<String, String>);

impl Loader for Mem {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }
    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Ok(self.0.keys().cloned().collect())
    }
}

/// The project made of `files` (path, content).
pub fn mem(files: &[(&str, &str)]) -> Mem {
    Mem(files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

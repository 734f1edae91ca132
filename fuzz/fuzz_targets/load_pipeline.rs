//! The YAML loader must return a pipeline or diagnostics for any input, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_ci::Loader;

/// One in-memory file: the fuzz input is `.gitlab-ci.yml`; `include:local` of anything else
/// finds the same text under `other.yml`, so nested includes are exercised too.
struct Mem(String);

impl Loader for Mem {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        match path {
            ".gitlab-ci.yml" | "other.yml" => Ok(self.0.clone()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                path.to_string(),
            )),
        }
    }

    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Ok(vec![".gitlab-ci.yml".into(), "other.yml".into()])
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let mem = Mem(text);
    if let Err(e) = wharf_ci::load_pipeline(".gitlab-ci.yml", &mem) {
        // Rendering walks spans against the source: it must not panic either.
        let _ = e.render(&|_| Some(mem.0.clone()));
    }
});

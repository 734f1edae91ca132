//! `rules:if` expressions: parse never panics, and what parses prints back to the same tree and
//! evaluates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = wharf_ci::expr::parse(&text) {
        let printed = e.to_string();
        assert_eq!(
            wharf_ci::expr::parse(&printed).as_ref(),
            Ok(&e),
            "{printed}"
        );
        let lookup = |name: &str| (name.len() % 2 == 0).then(|| name.to_lowercase());
        let _ = e.evaluate(&lookup);
    }
});

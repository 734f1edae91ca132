//! The load-time variables (CLI, variables files, predefined `CI_*`) as includes see them: `$VAR`
//! in include paths and `expand_vars` in inputs, `if:` in include rules. Of two entries with one
//! name, the later wins.

pub(super) fn expand_vars(s: &str, variables: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        variables
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match lookup(name).filter(|_| !name.is_empty()) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[i..i + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Evaluate a rules `if:` against the load-time variables (later entries win).
pub(super) fn eval_if(src: &str, variables: &[(String, String)]) -> Result<bool, String> {
    let expr = crate::expr::parse(src).map_err(|e| e.to_string())?;
    let lookup = |name: &str| {
        variables
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Ok(expr.evaluate(&lookup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_in_paths() {
        let vars = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand_vars("$A/${A}.yml", &vars), "x/x.yml");
        assert_eq!(expand_vars("$B/a.yml", &vars), "$B/a.yml");
        assert_eq!(expand_vars("a$", &vars), "a$");
    }
}

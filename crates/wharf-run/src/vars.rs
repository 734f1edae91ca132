//! Job variables: precedence, GitLab's `$VAR` / `${VAR}` / `$$` expansion, masking marks.

use indexmap::IndexMap;
use std::fmt;

/// One variable as the job sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct JobVariable {
    pub name: String,
    pub value: String,
    pub masked: bool,
    /// File-type: the job sees a path to a file holding `value`.
    pub file: bool,
    /// `expand: false` keeps `$` literal.
    pub expand: bool,
}

impl fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobVariable")
            .field("name", &self.name)
            .field(
                "value",
                &if self.masked {
                    "<masked>"
                } else {
                    self.value.as_str()
                },
            )
            .field("file", &self.file)
            .finish()
    }
}

/// Variables by name; a later `set` replaces an earlier one (callers insert lowest precedence
/// first: predefined, global, job, variables file, CLI).
#[derive(Clone, Default, Debug)]
pub struct VarSet {
    vars: IndexMap<String, JobVariable>,
}

impl VarSet {
    pub fn set(&mut self, var: JobVariable) {
        // Keep the "masked" mark if a lower level marked the same name masked: the value is
        // still the same secret's slot.
        let masked = var.masked || self.vars.get(&var.name).is_some_and(|v| v.masked);
        self.vars
            .insert(var.name.clone(), JobVariable { masked, ..var });
    }

    pub fn set_plain(&mut self, name: &str, value: impl Into<String>) {
        self.set(JobVariable {
            name: name.to_string(),
            value: value.into(),
            masked: false,
            file: false,
            expand: true,
        });
    }

    pub fn get(&self, name: &str) -> Option<&JobVariable> {
        self.vars.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobVariable> {
        self.vars.values()
    }

    /// The value of `name` with variable references in it expanded (as the job will see it).
    pub fn resolved(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|v| self.resolve_value(v, 0))
    }

    fn resolve_value(&self, v: &JobVariable, depth: usize) -> String {
        if !v.expand || depth > MAX_DEPTH {
            return v.value.clone();
        }
        expand_with(&v.value, &|n| {
            self.vars
                .get(n)
                .map(|inner| self.resolve_value(inner, depth + 1))
        })
    }

    /// Expand `$VAR`/`${VAR}` in `text` (image names, cache keys, artifact paths...).
    /// Unknown variables expand to the empty string, as GitLab does.
    pub fn expand(&self, text: &str) -> String {
        expand_with(text, &|n| self.resolved(n))
    }

    /// Every value that must never appear in a log: masked variables, with their expansions.
    pub fn secrets(&self) -> Vec<String> {
        self.vars
            .values()
            .filter(|v| v.masked)
            .flat_map(|v| [v.value.clone(), self.resolve_value(v, 0)])
            .collect()
    }
}

const MAX_DEPTH: usize = 10;

/// GitLab's expansion: `$NAME`, `${NAME}`, `$$` -> `$`. A `$` not followed by a name is kept.
pub fn expand_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if is_name(&braced[..end]) => {
                    out.push_str(&lookup(&braced[..end]).unwrap_or_default());
                    rest = &braced[end + 1..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            let len = after
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> VarSet {
        let mut v = VarSet::default();
        for (k, val) in pairs {
            v.set_plain(k, *val);
        }
        v
    }

    #[test]
    fn expansion_forms() {
        let v = set(&[("A", "x"), ("B_1", "y")]);
        let cases = [
            ("$A", "x"),
            ("${A}", "x"),
            ("pre-${A}-$B_1.tar", "pre-x-y.tar"),
            ("$$A", "$A"),
            ("$UNKNOWN/z", "/z"),
            ("cost $ 5", "cost $ 5"),
            ("${not valid}", "${not valid}"),
            ("trailing $", "trailing $"),
        ];
        for (input, want) in cases {
            assert_eq!(v.expand(input), want, "{input}");
        }
    }

    #[test]
    fn nested_values_expand_and_cycles_stop() {
        let mut v = set(&[
            ("ENV", "staging"),
            ("URL", "https://${ENV}.example.com"),
            ("X", "$Y"),
            ("Y", "$X"),
        ]);
        assert_eq!(v.resolved("URL").unwrap(), "https://staging.example.com");
        let _ = v.resolved("X"); // terminates
        v.set(JobVariable {
            name: "RAW".into(),
            value: "$ENV".into(),
            masked: false,
            file: false,
            expand: false,
        });
        assert_eq!(v.resolved("RAW").unwrap(), "$ENV");
    }

    #[test]
    fn later_set_wins_and_masked_mark_sticks() {
        let mut v = VarSet::default();
        v.set(JobVariable {
            name: "T".into(),
            value: "a".into(),
            masked: true,
            file: false,
            expand: true,
        });
        v.set_plain("T", "override-secret");
        assert_eq!(v.resolved("T").unwrap(), "override-secret");
        assert!(v.secrets().contains(&"override-secret".to_string()));
        assert!(!format!("{v:?}").contains("override-secret"));
    }
}

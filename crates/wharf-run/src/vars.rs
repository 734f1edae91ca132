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

    /// The job's `DOCKER_AUTH_CONFIG` as the runner reads it (expanded unless `expand: false`).
    pub fn docker_auth_config(&self) -> Option<String> {
        let v = self.vars.get("DOCKER_AUTH_CONFIG")?;
        Some(if v.expand {
            self.resolve_value(v, 0)
        } else {
            v.value.clone()
        })
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

/// Where a job's variables come from, lowest precedence first as GitLab documents: predefined,
/// global `variables:`, `workflow: rules: variables`, the job's (and its matching rule's)
/// `variables:`, `artifacts: reports: dotenv` of the jobs it takes artifacts from, then the
/// variables files and `--variable` (GitLab's project and pipeline variables).
#[derive(Clone, Default)]
pub struct VarSources {
    pub predefined: Vec<(String, String)>,
    pub global: Vec<wharf_ci::Variable>,
    pub workflow: Vec<wharf_ci::Variable>,
    pub file: Vec<wharf_ci::FileVariable>,
    pub cli: Vec<(String, String)>,
}

impl fmt::Debug for VarSources {
    // File and CLI values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VarSources")
            .field("predefined", &self.predefined)
            .field("global", &self.global.len())
            .field("file", &self.file)
            .field("cli", &self.cli.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl VarSources {
    /// The variables a job sees. `job_predefined` (CI_JOB_NAME...) sit with the predefined ones.
    /// `inherit` is the job's `inherit: variables:` (`None`: every global variable; a list: only
    /// those; empty: none).
    pub fn build(
        &self,
        job_predefined: &[(String, String)],
        job: &[wharf_ci::Variable],
        inherit: Option<&[String]>,
        dotenv: &[(String, String)],
    ) -> VarSet {
        let mut v = VarSet::default();
        for (k, val) in self.predefined.iter().chain(job_predefined) {
            v.set_plain(k, val.clone());
        }
        let inherited = self
            .global
            .iter()
            .filter(|g| inherit.is_none_or(|names| names.contains(&g.name)));
        for var in inherited.chain(&self.workflow).chain(job) {
            v.set(JobVariable {
                name: var.name.clone(),
                value: var.value.clone(),
                masked: false,
                file: false,
                expand: var.expand,
            });
        }
        for (k, val) in dotenv {
            // Values from a file a job wrote: literal, as GitLab keeps them.
            v.set(JobVariable {
                name: k.clone(),
                value: val.clone(),
                masked: false,
                file: false,
                expand: false,
            });
        }
        for fv in &self.file {
            v.set(JobVariable {
                name: fv.name.clone(),
                value: fv.value.clone(),
                masked: fv.masked || fv.name == "DOCKER_AUTH_CONFIG",
                file: fv.file,
                expand: true,
            });
        }
        for (k, val) in &self.cli {
            v.set(JobVariable {
                name: k.clone(),
                value: val.clone(),
                masked: k == "DOCKER_AUTH_CONFIG",
                file: false,
                expand: true,
            });
        }
        if let Some(var) = v.get("DOCKER_AUTH_CONFIG").cloned() {
            v.set(JobVariable {
                masked: true,
                ..var
            });
        }
        v
    }
}

const MAX_DEPTH: usize = 10;

/// The variable-name grammar is wharf-ci's (the variables file is checked there at load); the
/// job side checks names again before they become file names and dotenv variables.
pub use wharf_ci::{MAX_VARIABLE_NAME_LEN, is_variable_name};

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

/// Parse a dotenv `--variables-file` (`KEY=value`, quotes, `export`, comments).
pub fn parse_dotenv(name: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|item| item.map_err(|e| format!("{name}: {}", redact_dotenv_error(&e))))
        .collect()
}

/// dotenvy's parse errors quote the offending line, which may hold a secret: keep only the
/// position.
fn redact_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => {
            format!("cannot parse the line at byte {index} (expected KEY=value)")
        }
        other => other.to_string(),
    }
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
    fn sources_follow_gitlab_precedence() {
        let var = |name: &str, value: &str| wharf_ci::Variable {
            name: name.into(),
            value: value.into(),
            expand: true,
            span: None,
        };
        let sources = VarSources {
            predefined: vec![("CI_X".into(), "pre".into()), ("A".into(), "pre".into())],
            global: vec![var("A", "global"), var("B", "global"), var("D", "global")],
            workflow: vec![var("B", "workflow")],
            file: vec![wharf_ci::FileVariable {
                name: "E".into(),
                value: "file".into(),
                masked: false,
                file: false,
            }],
            cli: vec![("E".into(), "cli".into()), ("F".into(), "cli".into())],
        };
        let v = sources.build(
            &[("CI_JOB_NAME".into(), "j".into())],
            &[var("C", "job"), var("D", "job"), var("F", "job")],
            None,
            &[
                ("D".into(), "dotenv$X".into()),
                ("F".into(), "dotenv".into()),
            ],
        );
        let got = |n: &str| v.resolved(n).unwrap();
        assert_eq!(got("CI_X"), "pre");
        assert_eq!(got("CI_JOB_NAME"), "j");
        assert_eq!(got("A"), "global");
        assert_eq!(got("B"), "workflow");
        assert_eq!(got("C"), "job");
        // `inherit: variables: [D]` keeps only that global one.
        let only_d = sources.build(&[], &[], Some(&["D".to_string()]), &[]);
        assert_eq!(
            only_d.resolved("A").unwrap(),
            "pre",
            "global A not inherited"
        );
        assert_eq!(only_d.resolved("D").unwrap(), "global");
        // dotenv beats the job's variables and stays literal; CLI beats dotenv.
        assert_eq!(got("D"), "dotenv$X");
        assert_eq!(got("E"), "cli");
        assert_eq!(got("F"), "cli");
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

    #[test]
    fn dotenv_parses_and_errors_hide_values() {
        let vars = parse_dotenv("v.env", "# c\nA=1\nexport B=\"two words\"\nC='x$y'\n").unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x$y".into())
            ]
        );
        let err = parse_dotenv("v.env", "GOOD=1\nthis is-not valid hunter2secret\n").unwrap_err();
        assert!(err.starts_with("v.env:"), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
    }
}

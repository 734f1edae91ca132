//! `extends`: a job with every job it extends deep-merged in (its own keys win), memoised so
//! each template is merged once; GitLab's depth limit (11) and cycles reported with the chain.

use crate::diagnostic::Diags;
use crate::keywords;
use crate::read::set_entry;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Map, Value, deep_merge};
use std::collections::HashMap;

/// GitLab's limit on `extends` nesting.
const MAX_EXTENDS_DEPTH: usize = 11;

/// Resolves `extends` with memoisation, so each template is merged once.
pub(super) struct Resolver<'a, 'd> {
    root: &'a Map,
    /// `None` when resolving failed (already reported); else the merged job and its longest
    /// `extends` chain (the job first), for the depth limit.
    memo: HashMap<String, Option<(Map, Vec<String>)>>,
    pub d: &'d mut Diags,
}

impl<'a, 'd> Resolver<'a, 'd> {
    pub fn new(root: &'a Map, d: &'d mut Diags) -> Self {
        Self {
            root,
            memo: HashMap::new(),
            d,
        }
    }

    /// The job `name` with everything it extends merged in (its own keys win), without `extends`.
    pub fn resolve(&mut self, name: &str, chain: &mut Vec<String>) -> Option<Map> {
        self.resolve_with_depth(name, chain).map(|(m, _)| m)
    }

    fn resolve_with_depth(
        &mut self,
        name: &str,
        chain: &mut Vec<String>,
    ) -> Option<(Map, Vec<String>)> {
        if let Some(done) = self.memo.get(name) {
            return done.clone();
        }
        let entry = self.root.get(name)?;
        let own = entry.value.as_map()?;
        chain.push(name.to_string());
        let result = self.resolve_uncached(name, own, chain);
        chain.pop();
        self.memo.insert(name.to_string(), result.clone());
        result
    }

    fn resolve_uncached(
        &mut self,
        name: &str,
        own: &Map,
        chain: &mut Vec<String>,
    ) -> Option<(Map, Vec<String>)> {
        let Some(ext) = set_entry(own, "extends") else {
            return Some((own.clone(), vec![name.to_string()]));
        };
        let targets: Vec<(String, Span)> = match &ext.value.value {
            Value::Scalar(s) => vec![(s.text.clone(), ext.value.span.clone())],
            Value::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match &i.value {
                        Value::Scalar(s) => out.push((s.text.clone(), i.span.clone())),
                        _ => {
                            self.d.error(
                                &i.span,
                                format!(
                                    "`extends` of `{name}` must list job names, found {}",
                                    i.kind()
                                ),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            _ => {
                self.d.error(
                    &ext.value.span,
                    format!(
                        "`extends` of `{name}` must be a job name or a list of them, found {}",
                        ext.value.kind()
                    ),
                );
                return None;
            }
        };
        let mut merged = Map::new();
        let mut longest = vec![name.to_string()];
        let mut ok = true;
        for (target, span) in targets {
            if chain.contains(&target) {
                let mut cycle = chain.clone();
                cycle.push(target.clone());
                self.d
                    .error(&span, format!("circular `extends`: {}", cycle.join(" -> ")));
                ok = false;
                continue;
            }
            match self.root.get(&target) {
                None => {
                    let candidates = self
                        .root
                        .keys()
                        .filter(|k| !keywords::is_top_level(k))
                        .map(String::as_str);
                    let help = did_you_mean(&target, candidates);
                    self.d
                        .error(&span, format!("`{name}` extends unknown job `{target}`"))
                        .help_opt(help);
                    ok = false;
                }
                Some(t) if t.value.as_map().is_none() || keywords::is_top_level(&target) => {
                    self.d.error(
                        &span,
                        format!("`{name}` extends `{target}`, which is not a job (a map)"),
                    );
                    ok = false;
                }
                Some(_) => match self.resolve_with_depth(&target, chain) {
                    // A chain of N names is N - 1 levels of `extends`.
                    Some((_, path)) if path.len() > MAX_EXTENDS_DEPTH => {
                        self.d.error(
                            &span,
                            format!(
                                "`extends` is nested too deeply (more than {MAX_EXTENDS_DEPTH} levels): {name} -> {}",
                                path.join(" -> ")
                            ),
                        );
                        ok = false;
                    }
                    Some((base, path)) => {
                        if path.len() + 1 > longest.len() {
                            longest = std::iter::once(name.to_string()).chain(path).collect();
                        }
                        merged = deep_merge(&merged, &base);
                    }
                    None => ok = false,
                },
            }
        }
        if !ok {
            return None;
        }
        let mut own = own.clone();
        own.shift_remove("extends");
        Some((deep_merge(&merged, &own), longest))
    }
}

//! `parallel: N` and `parallel: matrix` read into a [`Spec`]; expanded into jobs by
//! `load::parallel` once every job is known.

use crate::diagnostic::Diags;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Node, Psych, Scalar, Value};

/// GitLab's bounds: `parallel: N` is 1..=200 (its `Parallel` entry's numericality check) and
/// a matrix makes at most 200 jobs.
const MIN_PARALLEL: u32 = 1;
const MAX_PARALLEL: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    Count(u32),
    /// Each instance's variables, in order (name, value, where the value is written).
    Matrix(Vec<Vec<(String, String, Span)>>),
}

pub(crate) fn parse(n: &Node, what: &str, d: &mut Diags) -> Option<Spec> {
    match &n.value {
        Value::Scalar(_) => {
            let v = integer(n, what, d)?;
            match u32::try_from(v) {
                Ok(v) if (MIN_PARALLEL..=MAX_PARALLEL).contains(&v) => Some(Spec::Count(v)),
                _ => {
                    d.error(
                        &n.span,
                        format!(
                            "{what} must be between {MIN_PARALLEL} and {MAX_PARALLEL}, found {v}"
                        ),
                    );
                    None
                }
            }
        }
        Value::Map(m) => {
            check_keys(m, what, &["matrix"], d);
            let e = m.get("matrix")?;
            matrix(&e.value, &format!("{what} `matrix`"), d)
        }
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a number or `matrix:`, found {}", n.kind()),
            );
            None
        }
    }
}

fn matrix(n: &Node, what: &str, d: &mut Diags) -> Option<Spec> {
    let Value::Seq(entries) = &n.value else {
        d.error(
            &n.span,
            format!("{what} must be a list of maps, found {}", n.kind()),
        );
        return None;
    };
    let mut instances: Vec<Vec<(String, String, Span)>> = Vec::new();
    let mut ok = true;
    for entry in entries {
        let Some(m) = entry.as_map() else {
            d.error(
                &entry.span,
                format!(
                    "{what} entries must be maps of variables, found {}",
                    entry.kind()
                ),
            );
            ok = false;
            continue;
        };
        // The cartesian product of this entry, the first variable varying slowest.
        let mut product: Vec<Vec<(String, String, Span)>> = vec![Vec::new()];
        for (name, e) in m {
            let values: Vec<(String, Span)> = match &e.value.value {
                Value::Scalar(s) => match matrix_value(&e.value, s, what, d) {
                    Some(v) => vec![v],
                    None => {
                        ok = false;
                        continue;
                    }
                },
                Value::Seq(items) => {
                    let mut vals = Vec::new();
                    for i in items {
                        match &i.value {
                            Value::Scalar(s) => match matrix_value(i, s, what, d) {
                                Some(v) => vals.push(v),
                                None => ok = false,
                            },
                            // `values.flatten(1)` is what GitLab checks, so a list one level
                            // down (from an alias: `[*versions, "3.12"]`) passes, and
                            // `Array(value).map(&:to_s)` makes it one value, Ruby's inspect.
                            Value::Seq(inner) => match nested_matrix_value(i, inner, what, d) {
                                Some(v) => vals.push(v),
                                None => ok = false,
                            },
                            _ => {
                                d.error(
                                    &i.span,
                                    format!("{what} values must be strings, found {}", i.kind()),
                                );
                                ok = false;
                            }
                        }
                    }
                    vals
                }
                _ => {
                    d.error(
                        &e.value.span,
                        format!(
                            "{what} `{name}` must be a string or a list of strings, found {}",
                            e.value.kind()
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            product = product
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |(v, span)| {
                        let mut next = prefix.clone();
                        next.push((name.clone(), v.clone(), span.clone()));
                        next
                    })
                })
                .collect();
            if product.len() > MAX_PARALLEL as usize {
                break;
            }
        }
        instances.extend(product.into_iter().filter(|p| !p.is_empty()));
        if instances.len() > MAX_PARALLEL as usize {
            d.error(
                &n.span,
                format!("{what} makes more than {MAX_PARALLEL} jobs (GitLab's limit)"),
            );
            return None;
        }
    }
    if !ok {
        return None;
    }
    if instances.is_empty() {
        // `Product::Matrix` takes an empty list (`array_of_hashes`), and GitLab's normalizer
        // then expands the job into no job at all.
        d.warning(
            &n.span,
            format!("{what} makes no jobs, so the job is not created (as on GitLab)"),
        );
    }
    Some(Spec::Matrix(instances))
}

/// GitLab's name for one `parallel: matrix` instance: `deploy: [aws, app1]`.
pub(crate) fn instance_name<'a>(base: &str, values: impl Iterator<Item = &'a str>) -> String {
    format!("{base}: [{}]", values.collect::<Vec<_>>().join(", "))
}

/// A matrix value as GitLab's `validate_array_value_variables` takes it: a String, a Symbol or
/// an Integer (as Ruby writes it: `010` is 8); a float (`3.10`) or a boolean is refused.
fn matrix_value(n: &Node, s: &Scalar, what: &str, d: &mut Diags) -> Option<(String, Span)> {
    let kind = match s.psych() {
        Psych::Float(_) => "a float",
        Psych::Bool(_) => "a boolean",
        Psych::Str | Psych::Int(_) => return Some((s.ruby_text(), n.span.clone())),
    };
    d.error(
        &n.span,
        format!(
            "{what} values must be strings or integers, found `{}` ({kind} to GitLab's YAML reader)",
            s.text
        ),
    )
    .help(format!("quote it to keep the text: `'{}'`", s.text));
    None
}

/// A list inside a matrix value's list, as GitLab turns it into one value: Ruby's
/// `Array#to_s` (`[1, "a"]`), after checking its items as `flatten(1)` does (strings and
/// integers only).
fn nested_matrix_value(
    n: &Node,
    items: &[Node],
    what: &str,
    d: &mut Diags,
) -> Option<(String, Span)> {
    let mut shown = Vec::with_capacity(items.len());
    for item in items {
        let Value::Scalar(s) = &item.value else {
            d.error(
                &item.span,
                format!(
                    "{what} values must be strings or integers, found {} two lists deep",
                    item.kind()
                ),
            );
            return None;
        };
        let (text, _) = matrix_value(item, s, what, d)?;
        shown.push(match s.psych() {
            Psych::Int(_) => text,
            _ => ruby_inspect(&text),
        });
    }
    Some((format!("[{}]", shown.join(", ")), n.span.clone()))
}

/// Ruby's `String#inspect` for the characters a matrix value may hold.
fn ruby_inspect(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '#' if matches!(chars.peek(), Some('{' | '$' | '@')) => out.push_str("\\#"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::ruby_inspect;

    #[test]
    fn strings_are_shown_as_ruby_s_inspect_shows_them() {
        assert_eq!(ruby_inspect("a"), r#""a""#);
        assert_eq!(ruby_inspect("say \"hi\"\\"), r#""say \"hi\"\\""#);
        assert_eq!(ruby_inspect("a\nb\t\u{1b}"), r#""a\nb\t\e""#);
        assert_eq!(ruby_inspect("#{x} #$y #@z #a"), r#""\#{x} \#$y \#@z #a""#);
        assert_eq!(ruby_inspect("\u{1}"), r#""\u0001""#);
    }
}

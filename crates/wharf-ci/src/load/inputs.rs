//! CI/CD inputs: a file's `spec: inputs:` header (its first YAML document, before `---`), the
//! values an `include` passes with `inputs:`, and `$[[ inputs.NAME | function ... ]]`
//! interpolation in the rest of the file, with GitLab's semantics:
//!
//! - An input without `default` is required; an input that the header does not define is an
//!   error; `type` (`string`, the default, `number`, `boolean`, `array`), `options` (string and
//!   number inputs) and `regex` (string inputs) check the default and the given value.
//! - Interpolation happens in keys and values of the content, once, before the file is merged.
//!   A value that is exactly one block takes the input's typed value (an array stays an array);
//!   a block inside a longer string is replaced by the value's text.
//! - Functions: `expand_vars` (the load-time variables, one level; unknown names stay),
//!   `truncate(offset,length)` (characters), `posix_escape` (Ruby's `Shellwords.escape`); at
//!   most 3 per block, on string values only.
//! - `$[[ matrix.X ]]` blocks belong to `needs:parallel:matrix` and are left as written, as
//!   GitLab leaves them. A file without a header is not interpolated at all.
//!
//! The main `.gitlab-ci.yml` may have a header too. GitLab takes its values from whoever starts
//! the pipeline (UI, API, schedules); wharf starts pipelines with none, so every input takes its
//! default, and an input without one is an error. A child pipeline's files get theirs from the
//! `inputs:` of their `trigger: include:` entry: GitLab builds a child pipeline as a file that
//! includes those entries, so they are checked exactly as an `include`'s.

use super::interpolate::{Interpolator, to_text};
use super::options::LoadOptions;
use crate::diagnostic::Diags;
use crate::read::{check_keys, set_entry};
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Map, Node, Psych, Value};
use indexmap::IndexMap;

const INPUT_KEYS: &[&str] = &[
    "default",
    "description",
    "options",
    "regex",
    "type",
    "rules",
];
const TYPES: &[&str] = &["string", "number", "boolean", "array"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Number,
    Boolean,
    Array,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Number => "number",
            Type::Boolean => "boolean",
            Type::Array => "array",
        }
    }

    fn accepts(self, n: &Node) -> bool {
        match (&n.value, self) {
            (Value::Scalar(s), Type::String) => s.psych() == Psych::Str,
            (Value::Scalar(s), Type::Number) => {
                matches!(s.psych(), Psych::Int(_) | Psych::Float(_))
            }
            (Value::Scalar(s), Type::Boolean) => matches!(s.psych(), Psych::Bool(_)),
            (Value::Seq(_), Type::Array) => true,
            _ => false,
        }
    }
}

/// One input of a `spec: inputs:` header.
struct Input {
    name: String,
    /// Where the input's name is written in the header.
    span: Span,
    kind: Type,
    default: Option<Node>,
    options: Option<Vec<Node>>,
    /// The pattern as written (shown in messages) and compiled.
    regex: Option<(String, regex::Regex)>,
}

/// Where a file's input values come from.
pub(crate) enum Given<'a> {
    /// The main file: no values, every input takes its default.
    Pipeline,
    /// An `include` of `file`, written at `at`, with its `inputs:` entry when it has one.
    /// `via_trigger`: a child pipeline's `trigger: include:` entry (in the parent file), which
    /// GitLab handles exactly like an `include` of the child's own configuration.
    Include {
        file: &'a str,
        at: &'a Span,
        inputs: Option<&'a Entry>,
        via_trigger: bool,
    },
}

impl Given<'_> {
    /// The keyword that passes the values, as messages name it.
    fn keyword(&self) -> &'static str {
        match self {
            Given::Include {
                via_trigger: true, ..
            } => "`trigger:include`",
            _ => "`include`",
        }
    }
}

/// The content document of a parsed file: with a `spec:` header, the header's inputs resolved
/// from `given` and interpolated into the content. `None` after reporting why not. The content
/// may be null (a header alone); the caller reports empty files.
pub(crate) fn content(
    docs: Vec<Node>,
    given: &Given<'_>,
    options: &LoadOptions,
    d: &mut Diags,
) -> Option<Option<Node>> {
    let mut docs = docs.into_iter();
    let (first, second, third) = (docs.next(), docs.next(), docs.next());
    if let Some(extra) = third {
        d.error(
            &extra.span,
            "the file has more than two YAML documents (a `spec:` header and the configuration)",
        );
        return None;
    }
    let Some(first) = first else {
        return Some(None);
    };
    let Some(content) = second else {
        // GitLab reads a header only when a second document follows
        // (`Yaml::Documents#has_header?`); in a file of one document `spec:` is a job like any
        // other key (an rspec job is often called `spec`). Only what can be nothing but a header
        // is refused, saying what is missing, where GitLab would complain about a job.
        if let Some(spec) = first.as_map().and_then(|m| m.get("spec"))
            && spec.value.as_map().is_some_and(|m| {
                !m.is_empty() && m.iter().all(|(k, _)| HEADER_KEYS.contains(&k.as_str()))
            })
        {
            d.error(&spec.key_span, "a `spec:` header must be followed by `---` and the configuration")
                .help("GitLab reads `spec:` as a header only in a file's first YAML document; end the header with a line `---`");
            return None;
        }
        // GitLab objects only to inputs actually given (`inputs: {}` is fine).
        if let Given::Include {
            file,
            inputs: Some(e),
            ..
        } = given
            && e.value.as_map().is_none_or(|m| !m.is_empty())
            && !e.value.is_null()
        {
            d.error(
                &e.key_span,
                format!(
                    "{} passes `inputs` to `{file}`, which has no `spec: inputs:` header",
                    given.keyword()
                ),
            )
            .help("declare the inputs in a header: `spec: {inputs: {NAME: {default: ...}}}`, then a line `---`");
            return None;
        }
        return Some(Some(first));
    };
    let Some(spec) = first.as_map().and_then(|m| m.get("spec")) else {
        d.error(&content.span, "the file has more than one YAML document")
            .help("only a `spec:` header may come before `---`");
        return None;
    };
    if let Some(header) = first.as_map() {
        for (k, e) in header {
            if k != "spec" {
                d.error(
                    &e.key_span,
                    format!("unknown key `{k}` in the header: only `spec:` may be there"),
                );
            }
        }
    }
    let inputs = spec_inputs(&spec.value, d)?;
    let values = resolve(&inputs, given, d)?;
    let errors_before = d.0.len();
    let content = Interpolator {
        values: &values,
        options,
        d,
    }
    .node(content);
    (!d.0[errors_before..].iter().any(|x| x.is_error())).then_some(Some(content))
}

/// The keys of GitLab's `spec:` header.
const HEADER_KEYS: [&str; 3] = ["inputs", "include", "component"];

/// `spec:` -> its inputs, in order.
fn spec_inputs(spec: &Node, d: &mut Diags) -> Option<Vec<Input>> {
    let m = match &spec.value {
        Value::Map(m) => m,
        Value::Null => return Some(Vec::new()),
        _ => {
            d.error(
                &spec.span,
                format!("`spec` must be a map with `inputs:`, found {}", spec.kind()),
            );
            return None;
        }
    };
    let mut ok = true;
    for (k, e) in m {
        match k.as_str() {
            "inputs" => {}
            "include" | "component" => {
                d.error(
                    &e.key_span,
                    format!("`spec:{k}` is not supported: wharf reads only `spec:inputs`"),
                );
                ok = false;
            }
            _ => {
                d.error(&e.key_span, format!("unknown key `{k}` in `spec`"))
                    .help_opt(did_you_mean(k, ["inputs"]));
                ok = false;
            }
        }
    }
    let Some(inputs) = set_entry(m, "inputs") else {
        return ok.then_some(Vec::new());
    };
    let Some(inputs) = inputs.value.as_map() else {
        d.error(
            &inputs.value.span,
            format!(
                "`spec:inputs` must be a map of input names, found {}",
                inputs.value.kind()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for (name, e) in inputs {
        match input(name, e, d) {
            Some(i) => out.push(i),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One input definition (`name:` alone, or a map of `default`, `type`...).
fn input(name: &str, e: &Entry, d: &mut Diags) -> Option<Input> {
    let what = format!("input `{name}`");
    let mut input = Input {
        name: name.to_string(),
        span: e.key_span.clone(),
        kind: Type::String,
        default: None,
        options: None,
        regex: None,
    };
    let m = match &e.value.value {
        Value::Null => return Some(input),
        Value::Map(m) => m,
        _ => {
            d.error(
                &e.value.span,
                format!(
                    "{what} must be a map (`default`, `type`, `options`, `regex`, `description`), found {}",
                    e.value.kind()
                ),
            );
            return None;
        }
    };
    let errors_before = d.0.len();
    check_keys(m, &what, INPUT_KEYS, d);
    if let Some(r) = m.get("rules") {
        d.error(
            &r.key_span,
            format!("`rules` of {what} (GitLab 18.7) are not supported"),
        );
    }
    if let Some(t) = m.get("type").filter(|t| !t.value.is_null()) {
        let text = match &t.value.value {
            Value::Scalar(s) => s.text.as_str(),
            _ => "",
        };
        input.kind = match text {
            "string" => Type::String,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            "array" => Type::Array,
            _ => {
                d.error(
                    &t.value.span,
                    format!(
                        "`type` of {what} must be one of {}, found {}",
                        TYPES.join(", "),
                        describe(&t.value)
                    ),
                )
                .help_opt(did_you_mean(text, TYPES.iter().copied()));
                return None;
            }
        };
    }
    // A missing `default` makes the input required. `default: null` makes it optional with no
    // value: GitLab's docs say so and GitLab accepts it for every type (GNOME's CI components
    // rely on it daily), although one version of `BaseInput` type-checked the null.
    input.default = m.get("default").map(|e| e.value.clone());
    if let Some(o) = m.get("options") {
        if !matches!(input.kind, Type::String | Type::Number) {
            d.error(
                &o.key_span,
                format!("`options` of {what} can only be used with string and number inputs"),
            );
        } else {
            match &o.value.value {
                Value::Seq(items) => input.options = Some(items.clone()),
                _ => {
                    d.error(
                        &o.value.span,
                        format!(
                            "`options` of {what} must be a list, found {}",
                            o.value.kind()
                        ),
                    );
                }
            }
        }
    }
    if let Some(r) = m.get("regex") {
        if input.kind != Type::String {
            d.error(
                &r.key_span,
                format!("`regex` of {what} can only be used with string inputs"),
            );
        } else {
            match &r.value.value {
                Value::Scalar(s) => match crate::re2::compile(&s.text) {
                    Ok(re) => input.regex = Some((s.text.clone(), re)),
                    Err(e) => {
                        d.error(
                            &r.value.span,
                            format!("`regex` of {what} is not a valid regular expression: {e}"),
                        );
                    }
                },
                _ => {
                    d.error(
                        &r.value.span,
                        format!(
                            "`regex` of {what} must be a string, found {}",
                            r.value.kind()
                        ),
                    );
                }
            }
        }
    }
    if d.0[errors_before..].iter().any(|x| x.is_error()) {
        return None;
    }
    Some(input)
}

/// Each input's value: the given one, else the default; every problem reported.
fn resolve(inputs: &[Input], given: &Given<'_>, d: &mut Diags) -> Option<IndexMap<String, Node>> {
    let mut ok = true;
    let provided: Option<&Map> = match given {
        Given::Include {
            inputs: Some(e), ..
        } => match &e.value.value {
            Value::Map(m) => Some(m),
            Value::Null => None,
            _ => {
                d.error(
                    &e.value.span,
                    format!(
                        "{} `inputs` must be a map of input names to values, found {}",
                        given.keyword(),
                        e.value.kind()
                    ),
                );
                return None;
            }
        },
        _ => None,
    };
    // What the messages call the place the values come from.
    let source = match given {
        Given::Include { file, .. } => format!("{} of `{file}`", given.keyword()),
        Given::Pipeline => "the pipeline".to_string(),
    };
    if let (Some(provided), Given::Include { file, .. }) = (provided, given) {
        for (name, e) in provided {
            if !inputs.iter().any(|i| i.name == *name) {
                d.error(
                    &e.key_span,
                    format!("{source}: unknown input `{name}` (`{file}` does not define it)"),
                )
                .help_opt(did_you_mean(name, inputs.iter().map(|i| i.name.as_str())));
                ok = false;
            }
        }
    }
    let mut values = IndexMap::new();
    for input in inputs {
        let defined = format!("`{}` is defined at {}", input.name, input.span);
        if let Some(default) = input.default.as_ref().filter(|v| !v.is_null()) {
            let what = format!("the default of input `{}`", input.name);
            ok &= check(input, default, &what, None, d);
        }
        let value = provided
            .and_then(|m| m.get(&input.name))
            .map(|e| &e.value)
            .filter(|v| !v.is_null());
        match (value, &input.default, given) {
            (Some(v), _, _) => {
                let what = format!("{source}: input `{}`", input.name);
                if check(input, v, &what, Some(&defined), d) {
                    values.insert(input.name.clone(), v.clone());
                } else {
                    ok = false;
                }
            }
            (None, Some(default), _) => {
                values.insert(input.name.clone(), default.clone());
            }
            (None, None, Given::Include { at, .. }) => {
                d.error(
                    at,
                    format!(
                        "{source}: input `{}` is required (it has no `default`) and not given",
                        input.name
                    ),
                )
                .help(format!(
                    "{defined}; pass it under `inputs:` of this {}",
                    given.keyword()
                ));
                ok = false;
            }
            (None, None, Given::Pipeline) => {
                d.error(
                    &input.span,
                    format!(
                        "input `{}` of the pipeline has no `default`, and wharf passes no pipeline inputs",
                        input.name
                    ),
                )
                .help("give it a `default:` (GitLab also needs one for pipelines started by pushes, merge requests and schedules)");
                ok = false;
            }
        }
    }
    ok.then_some(values)
}

/// Whether `v` fits `input`'s type, options and regex; reports at `v` (`what` names it, `help`
/// says where the input is defined).
fn check(input: &Input, v: &Node, what: &str, help: Option<&str>, d: &mut Diags) -> bool {
    let problem = problem(input, v);
    if let Some(problem) = &problem {
        d.error(&v.span, format!("{what} {problem}"))
            .help_opt(help.map(str::to_string));
    }
    problem.is_none()
}

/// What is wrong with `v` as a value of `input`.
fn problem(input: &Input, v: &Node) -> Option<String> {
    if !input.kind.accepts(v) {
        return Some(format!(
            "must be {} {}, found {}",
            if input.kind == Type::Array { "an" } else { "a" },
            input.kind.name(),
            describe(v)
        ));
    }
    if let Some(options) = &input.options {
        if !options.iter().any(|o| same_value(o, v)) {
            let listed: Vec<String> = options.iter().map(to_text).collect();
            return Some(format!(
                "is `{}`, which is not one of the allowed options ({})",
                to_text(v),
                listed.join(", ")
            ));
        }
    }
    if let (Some((written, re)), Value::Scalar(s)) = (&input.regex, &v.value) {
        if !re.is_match(&s.text) {
            return Some(format!(
                "is `{}`, which does not match the input's `regex` `{written}`",
                s.text
            ));
        }
    }
    None
}

/// Ruby's `==` on the loaded values: strings by text, numbers by value (`1 == 1.0`).
fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar(x), Value::Scalar(y)) => match (x.psych(), y.psych()) {
            (Psych::Str, Psych::Str) => x.text == y.text,
            (Psych::Bool(p), Psych::Bool(q)) => p == q,
            (p, q) => number(&p).zip(number(&q)).is_some_and(|(p, q)| p == q),
        },
        _ => false,
    }
}

fn number(p: &Psych) -> Option<f64> {
    match p {
        #[allow(clippy::cast_precision_loss)] // comparing, as Ruby does across Integer/Float
        Psych::Int(i) => Some(*i as f64),
        Psych::Float(f) => Some(*f),
        _ => None,
    }
}

fn describe(n: &Node) -> String {
    match &n.value {
        Value::Scalar(s) => format!("{} `{}`", n.kind(), s.text),
        _ => n.kind(),
    }
}

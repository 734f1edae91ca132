//! The expression language (`rules:if`) against GitLab's documented examples, its syntax errors,
//! and properties over generated expressions; plus "the loader never panics" over arbitrary text.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use proptest::prelude::*;
use std::collections::HashMap;
use wharf_ci::expr::{self, Expr, MatchTarget, Operand};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn eval(src: &str, v: &HashMap<String, String>) -> bool {
    let e = expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    e.evaluate(&|name| v.get(name).cloned())
}

/// (expression, expected) under one variable set, taken from GitLab's docs
/// (ci/jobs/job_rules.md, "CI/CD variable expressions" and "Common if clauses").
#[test]
fn documented_examples() {
    let v = vars(&[
        ("CI_PIPELINE_SOURCE", "merge_request_event"),
        ("CI_COMMIT_BRANCH", "feature/login"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("CI_COMMIT_TITLE", "Merge branch 'x' into 'main'"),
        ("VARIABLE", "content-42"),
        ("VARIABLE_1", "a"),
        ("VARIABLE_2", "a"),
        ("EMPTY", ""),
        ("BLANK", "   "),
        ("teststring", "abcde"),
        ("pattern", "/^ab.*/"),
        ("string1", "regex-job1"),
        ("self_ref", "/$string1/"),
        ("CI_JOB_NAME", "regex-job1"),
        ("MY_VARIABLE", "yes"),
    ]);
    let table: &[(&str, bool)] = &[
        (r#"$CI_PIPELINE_SOURCE == "merge_request_event""#, true),
        (r#"$CI_PIPELINE_SOURCE == 'schedule'"#, false),
        (r#"$CI_PIPELINE_SOURCE != "schedule""#, true),
        ("$VARIABLE_1 == $VARIABLE_2", true),
        ("$VARIABLE_1 != $VARIABLE_2", false),
        // Defined or not: `null`.
        ("$VARIABLE == null", false),
        ("$UNDEFINED == null", true),
        ("$UNDEFINED != null", false),
        ("$EMPTY == null", false),
        ("$EMPTY != null", true),
        // Defined but empty: `""`.
        (r#"$EMPTY == """#, true),
        (r#"$UNDEFINED == """#, false),
        (r#"$UNDEFINED != """#, true),
        (r#"$VARIABLE != """#, true),
        // Alone: defined and not empty (Rails' blank: whitespace only is empty too).
        ("$VARIABLE", true),
        ("$EMPTY", false),
        ("$UNDEFINED", false),
        ("$BLANK", false),
        // Regular expressions, unanchored unless anchors are written.
        ("$VARIABLE =~ /^content.*/", true),
        ("$VARIABLE !~ /^content.*/", false),
        ("$VARIABLE =~ /tent/", true),
        ("$VARIABLE =~ /^tent/", false),
        ("$VARIABLE =~ /^CONTENT/", false),
        ("$VARIABLE =~ /^CONTENT/i", true),
        ("$CI_COMMIT_BRANCH =~ /^feature\\//", true),
        ("$UNDEFINED =~ /^$/", true),
        ("$UNDEFINED !~ /xy/", true),
        // A regular expression stored in a variable; variables inside it are not expanded.
        ("$teststring =~ $pattern", true),
        ("$CI_JOB_NAME =~ /$string1/", false),
        ("$CI_JOB_NAME =~ $self_ref", false),
        // An undefined pattern variable: `=~` false, `!~` true.
        ("$teststring =~ $UNDEFINED", false),
        ("$teststring !~ $UNDEFINED", true),
        // Joined, `&&` before `||`, parentheses.
        (
            r#"$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_COMMIT_TITLE =~ /Merge branch.*/"#,
            false,
        ),
        (
            r#"$VARIABLE =~ /^content.*/ && $VARIABLE_2 == "a" && $MY_VARIABLE"#,
            true,
        ),
        (
            "$UNDEFINED =~ /^content.*/ || $VARIABLE =~ /42$/ && $MY_VARIABLE",
            true,
        ),
        (
            "$VARIABLE =~ /^content.*/ || $UNDEFINED =~ /xy/ && $UNDEFINED",
            true,
        ),
        (
            "($VARIABLE =~ /^content.*/ || $UNDEFINED) && $UNDEFINED",
            false,
        ),
        (
            r#"($CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH || $CI_COMMIT_BRANCH == "develop") && $MY_VARIABLE"#,
            false,
        ),
        (
            r#"$CI_COMMIT_BRANCH == "my-branch" || (($VARIABLE_1 == "thing" || $VARIABLE_2 == "a") && $MY_VARIABLE)"#,
            true,
        ),
        // The documented `&&` meaning, not GitLab's Ruby-truthiness bug (gitlab#321371).
        ("$EMPTY && $MY_VARIABLE", false),
        ("$EMPTY || $MY_VARIABLE", true),
        // Strings and null on either side.
        (r#""a" == $VARIABLE_1"#, true),
        ("null == $UNDEFINED", true),
        ("$UNDEFINED == $ALSO_UNDEFINED", true),
    ];
    for (src, want) in table {
        assert_eq!(eval(src, &v), *want, "{src}");
    }
}

/// GitLab's "Troubleshooting": a right side that is not `/pattern/` is a substring test.
#[test]
fn non_pattern_right_side_is_a_substring_test() {
    // The matrix from gitlab-org/gitlab#426313 (LEFT =~ RIGHT).
    let cases = [
        ("1234", "1234", true),
        ("1234", "23", false),
        ("1234", "/23/", true),
        ("23", "1234", true),
        ("23", "23", true),
        ("23", "/23/", true),
        ("/23/", "1234", false),
        ("/23/", "23", false),
        ("/23/", "/23/", true),
    ];
    for (left, right, want) in cases {
        let v = vars(&[("LEFT", left), ("RIGHT", right)]);
        assert_eq!(eval("$LEFT =~ $RIGHT", &v), want, "{left} =~ {right}");
        assert_eq!(eval("$LEFT !~ $RIGHT", &v), !want, "{left} !~ {right}");
    }
    // A string literal on the right behaves like a variable holding it.
    let v = vars(&[("A", "23")]);
    assert!(eval(r#"$A =~ "1234""#, &v));
    assert!(eval(r#"$A =~ "/^2/""#, &v));
    // An invalid regular expression in a variable falls back to the substring test too.
    let v = vars(&[("A", "a("), ("P", "/a(/")]);
    assert!(eval("$A =~ $P", &v));
    // A one-character pattern is fine in a variable (only the lexer rejects it).
    let v = vars(&[("A", "xyz"), ("P", "/y/")]);
    assert!(eval("$A =~ $P", &v));
}

#[test]
fn pattern_flags() {
    let v = vars(&[("M", "first\nsecond"), ("U", "aaa")]);
    assert!(!eval("$M =~ /^second/", &v));
    assert!(eval("$M =~ /^second/m", &v));
    assert!(!eval("$M =~ /first.second/", &v));
    assert!(eval("$M =~ /first.second/s", &v));
    assert!(eval("$M =~ /FIRST.SECOND/si", &v));
    // `U` swaps greediness: `a+` then matches one `a`, so `^a+$` still needs all of them.
    assert!(eval("$U =~ /^a+$/U", &v));
}

/// (expression, column, start of the message)
#[test]
fn syntax_errors_have_columns_and_say_what_is_wrong() {
    let table: &[(&str, usize, &str)] = &[
        ("", 0, "the expression is empty"),
        ("   ", 0, "the expression is empty"),
        ("$A ==", 5, "expected a value after `==`"),
        ("$A == ", 6, "expected a value after `==`"),
        ("$A =~", 5, "expected a value after `=~`"),
        ("$A != &&", 6, "expected a value after `!=`, found `&&`"),
        ("$A &&", 5, "expected an expression after `&&`"),
        ("$A || ", 6, "expected an expression after `||`"),
        ("&& $A", 0, "expected an expression, found `&&`"),
        (
            "$A $B",
            3,
            "expected `&&`, `||` or the end of the expression, found `$B`",
        ),
        (
            "$A = \"x\"",
            3,
            "unexpected `=` (did you mean `==` or `=~`?)",
        ),
        ("$A & $B", 3, "unexpected `&` (did you mean `&&`?)"),
        ("$A | $B", 3, "unexpected `|` (did you mean `||`?)"),
        (
            "${A} == 'x'",
            0,
            "`${A}` is not valid in an expression: write `$A`",
        ),
        ("$ == 'x'", 0, "`$` must be followed by a variable name"),
        ("$A == \"x", 6, "the string starting here has no closing \""),
        (
            "$A == 'x\ny'",
            6,
            "the string starting here has no closing ' on its line",
        ),
        ("$A =~ /x/", 6, "one-character regular expressions"),
        (
            "$A =~ /abc",
            6,
            "this `/` does not start a regular expression",
        ),
        ("$A =~ /a(b/", 6, "invalid regular expression /a(b/"),
        ("$A =~ /ab/x", 10, "unexpected `x`"),
        ("($A == 'x'", 0, "this `(` is never closed"),
        ("$A == 'x')", 9, "unmatched `)`"),
        ("()", 1, "empty parentheses"),
        ("($A) == 'x'", 5, "`==` needs a value on its left"),
        ("$A == $B == $C", 9, "comparisons cannot be chained"),
        ("$A == true", 6, "`true` is not a value here"),
        (
            "/ab/ =~ $A",
            0,
            "a regular expression can only follow `=~` or `!~`",
        ),
        ("$A == /ab/", 6, "a regular expression can only follow"),
        ("é == $A", 0, "unexpected `é`"),
        ("'é' == $A $B", 10, "expected `&&`"),
    ];
    for (src, column, message) in table {
        match expr::parse(src) {
            Ok(e) => panic!("{src:?} parsed as {e:?}"),
            Err(e) => {
                assert!(
                    e.message.starts_with(message),
                    "{src:?}: message {:?}, wanted {message:?}",
                    e.message
                );
                assert_eq!(e.column, *column, "{src:?}: {}", e.message);
            }
        }
    }
}

#[test]
fn gitlabs_token_limit() {
    // 99 tokens: `$A` then 49 times `|| $A`.
    let ok = format!("$A{}", " || $A".repeat(49));
    assert!(expr::parse(&ok).is_ok());
    let too_long = format!("{ok} || $A");
    let e = expr::parse(&too_long).unwrap_err();
    assert!(e.message.contains("at most 99 tokens"), "{e}");
    // Deep nesting is bounded by the same limit (no stack overflow).
    let deep = format!("{}$A{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(expr::parse(&deep).is_err());
}

#[test]
fn display_is_canonical() {
    let table: &[(&str, &str)] = &[
        ("$A==\"x\"", "$A == \"x\""),
        ("$A=='x'", "$A == \"x\""),
        ("$A=='say \"hi\"'", "$A == 'say \"hi\"'"),
        ("$A!~/^v\\d+$/i", "$A !~ /^v\\d+$/i"),
        ("(($A || $B)) && $C", "($A || $B) && $C"),
        ("$A || ($B && $C)", "$A || $B && $C"),
        ("($A || $B) || $C", "$A || $B || $C"),
        ("$A || ($B || $C)", "$A || ($B || $C)"),
        ("null!=$A", "null != $A"),
    ];
    for (src, want) in table {
        let e = expr::parse(src).unwrap();
        assert_eq!(e.to_string(), *want, "{src}");
        assert_eq!(expr::parse(want).unwrap(), e, "{want}");
    }
}

#[test]
fn variables_lists_what_is_read() {
    let e = expr::parse("$A == $B && ($C =~ $D || $E =~ /ab/)").unwrap();
    assert_eq!(e.variables(), ["A", "B", "C", "D", "E"]);
}

// ---- properties ----

fn name() -> impl Strategy<Value = String> {
    "[A-Z_][A-Z0-9_]{0,4}"
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        4 => name().prop_map(Operand::Variable),
        2 => "[a-z0-9 '._-]{0,6}".prop_map(Operand::String),
        1 => "[a-z0-9 \"._-]{0,6}".prop_map(Operand::String),
        1 => Just(Operand::Null),
    ]
}

const PATTERNS: &[&str] = &[
    "/^a/",
    "/ab/",
    "/^main$/",
    "/b+/i",
    "/^(x|y)z/",
    "/\\d+/",
    "/a\\/b/",
    "/^$/",
    "/a.b/s",
];

fn leaf() -> impl Strategy<Value = Expr> {
    let pattern = proptest::sample::select(PATTERNS).prop_map(|p| {
        // A pattern is only reachable through the parser.
        match expr::parse(&format!("$X =~ {p}")) {
            Ok(Expr::Match { right, .. }) => right,
            other => panic!("{p}: {other:?}"),
        }
    });
    let target = prop_oneof![
        2 => pattern,
        1 => operand().prop_map(MatchTarget::Value),
    ];
    prop_oneof![
        2 => operand().prop_map(Expr::Value),
        2 => (operand(), any::<bool>(), operand())
            .prop_map(|(left, negated, right)| Expr::Compare { left, negated, right }),
        2 => (operand(), any::<bool>(), target)
            .prop_map(|(left, negated, right)| Expr::Match { left, negated, right }),
    ]
}

/// Trees small enough that three of them joined stay under GitLab's 99-token limit.
fn expr_tree() -> impl Strategy<Value = Expr> {
    sized_tree(2, 4)
}

fn sized_tree(depth: u32, leaves: u32) -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(depth, leaves, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

/// Values for variables A..E and a few generated names; some undefined, some empty.
fn env() -> impl Strategy<Value = HashMap<String, String>> {
    proptest::collection::hash_map(
        prop_oneof![name(), Just("A".to_string()), Just("X".to_string())],
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just("main".to_string()),
            Just("/^a/".to_string()),
            "[a-z0-9/^$ ]{0,6}",
        ],
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Integration tests have no lib.rs beside them to persist failures next to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics(src in "\\PC{0,80}") {
        let _ = expr::parse(&src);
    }

    #[test]
    fn parse_never_panics_on_expression_like_text(
        src in "[$A-Z_ ()=!~&|'\"/\\\\ismnul0-9.^*+?\\[\\]{}-]{0,60}"
    ) {
        if let Err(e) = expr::parse(&src) {
            prop_assert!(e.column <= src.chars().count(), "{src:?}: {e:?}");
        }
    }

    #[test]
    fn display_parses_back_to_the_same_tree(e in sized_tree(5, 14)) {
        let text = e.to_string();
        prop_assert_eq!(expr::parse(&text), Ok(e), "{}", text);
    }

    #[test]
    fn and_is_both_or_is_either(a in expr_tree(), b in expr_tree(), v in env()) {
        let look = |n: &str| v.get(n).cloned();
        let (ea, eb) = (a.evaluate(&look), b.evaluate(&look));
        let both = expr::parse(&format!("({a}) && ({b})")).unwrap();
        let either = expr::parse(&format!("({a}) || ({b})")).unwrap();
        prop_assert_eq!(both.evaluate(&look), ea && eb);
        prop_assert_eq!(either.evaluate(&look), ea || eb);
    }

    #[test]
    fn and_binds_tighter_than_or(
        a in expr_tree(), b in expr_tree(), c in expr_tree(), v in env()
    ) {
        let look = |n: &str| v.get(n).cloned();
        let plain = expr::parse(&format!("({a}) || ({b}) && ({c})")).unwrap();
        let grouped = expr::parse(&format!("({a}) || (({b}) && ({c}))")).unwrap();
        prop_assert_eq!(&plain, &grouped);
        prop_assert_eq!(plain.evaluate(&look), grouped.evaluate(&look));
        prop_assert_eq!(
            plain.evaluate(&look),
            a.evaluate(&look) || (b.evaluate(&look) && c.evaluate(&look))
        );
    }
}

// ---- the loader never panics (the fuzz target's property, in the normal test suite) ----

struct OneFile(String);

impl wharf_ci::Loader for OneFile {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        match path {
            ".gitlab-ci.yml" | "other.yml" => Ok(self.0.clone()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                path.to_string(),
            )),
        }
    }
}

fn load_any(text: &str) {
    let mem = OneFile(text.to_string());
    if let Err(e) = wharf_ci::load_pipeline(".gitlab-ci.yml", &mem) {
        let _ = e.render(&|_| Some(text.to_string()));
    }
}

/// YAML-ish lines built from GitLab's keywords, values and expressions.
fn yamlish() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "stages",
        "variables",
        "workflow",
        "rules",
        "if",
        "when",
        "only",
        "except",
        "refs",
        "changes",
        "exists",
        "paths",
        "compare_to",
        "script",
        "image",
        "extends",
        "needs",
        "include",
        "local",
        "default",
        "start_in",
        "allow_failure",
        "name",
        "job",
        ".tpl",
        "<<",
        "parallel",
        "matrix",
        "services",
        "cache",
        "artifacts",
        "inherit",
    ]);
    let value = prop_oneof![
        Just("".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("never".to_string()),
        Just("delayed".to_string()),
        Just("'$A == \"x\"'".to_string()),
        Just("$A =~ /^v\\d/i".to_string()),
        Just("[main, /^rel-/]".to_string()),
        Just("*a".to_string()),
        Just("&a {script: [x]}".to_string()),
        Just("!reference [.tpl, script]".to_string()),
        Just("other.yml".to_string()),
        Just("1 hour".to_string()),
        "[a-z$ =~/'\"(){}\\[\\],:*&!-]{0,12}",
    ];
    let line = (0usize..4, key, value, any::<bool>()).prop_map(|(indent, k, v, dash)| {
        format!(
            "{}{}{k}: {v}",
            "  ".repeat(indent),
            if dash { "- " } else { "" }
        )
    });
    proptest::collection::vec(line, 0..14).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn load_pipeline_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        load_any(&text);
    }

    #[test]
    fn load_pipeline_never_panics_on_yaml_like_text(text in yamlish()) {
        load_any(&text);
    }
}

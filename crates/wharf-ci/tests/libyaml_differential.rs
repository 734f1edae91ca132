//! wharf's YAML reading against libyaml, the parser GitLab reads pipelines with (Ruby's Psych
//! wraps it), on generated pipelines: flow lists and maps whose lines start anywhere, plain and
//! quoted scalars over several lines, literal and folded scripts, Windows line ends, tabs after
//! a key's `:` and after a block entry's `-`, lines inside scalars that start like block entries. libyaml runs through PyYAML's `CSafeLoader`
//! (`tests/libyaml/load.py`, in the virtualenv `scripts/test-all.sh` pins as
//! `$WHARF_TEST_LIBYAML_PYTHON`). What libyaml accepts must load with the same script and
//! variables; what it refuses must be refused.
//!
//! `WHARF_DIFF_SEED=N` generates another set of documents; a failure prints the document.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{FILE, job, mem, name_values};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use wharf_ci::load_pipeline;

const DOCUMENTS: usize = 3000;

/// splitmix64: enough randomness for generating documents, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn spaces(&mut self, max: usize) -> String {
        " ".repeat(self.below(max + 1))
    }
}

const WORDS: &[&str] = &[
    "echo", "make", "build", "x1", "run-it", "say_hi", "tests", "a.b",
];
const KEYS: &[&str] = &["A", "B_2", "CI_X", "LONG_NAME"];

/// A scalar that stays text for GitLab: words, plain or quoted, on one line or several (the
/// next lines starting anywhere up to `max_indent`).
fn scalar(rng: &mut Rng, max_indent: usize) -> String {
    let mut words = rng.pick(WORDS).to_string();
    if rng.percent(40) {
        words = format!("{words} {}", rng.pick(WORDS));
    }
    let lines = |rng: &mut Rng| {
        let mut text = words.clone();
        if rng.percent(35) {
            // A next line may start like a block entry: inside a scalar it is text.
            let dash = rng.pick(&["", "", "", "- ", "-\t"]);
            text = format!(
                "{text}\n{}{dash}{}",
                rng.spaces(max_indent),
                rng.pick(WORDS)
            );
        }
        text
    };
    match rng.below(3) {
        0 => lines(rng),
        1 => format!("\"{}\"", lines(rng)),
        _ => {
            let inner = lines(rng);
            let inner = if rng.percent(30) {
                format!("{inner} it''s")
            } else {
                inner
            };
            format!("'{inner}'")
        }
    }
}

/// `open` entries `close`, each entry on a line of its own starting anywhere (or on the line
/// before), a trailing comma or not, the closing bracket anywhere.
fn flow(rng: &mut Rng, open: &str, close: &str, entries: Vec<String>, max: usize) -> String {
    let mut out = open.to_string();
    let count = entries.len();
    for (i, entry) in entries.into_iter().enumerate() {
        if rng.percent(75) {
            out.push('\n');
            out.push_str(&rng.spaces(max));
        } else {
            out.push(' ');
        }
        out.push_str(&entry);
        if i + 1 < count || rng.percent(50) {
            out.push(',');
        }
    }
    if rng.percent(80) {
        out.push('\n');
        out.push_str(&rng.spaces(max));
    } else {
        out.push(' ');
    }
    out.push_str(close);
    out
}

fn document(rng: &mut Rng) -> String {
    let base = if rng.percent(50) { 2 } else { 4 };
    let pad = " ".repeat(base);
    let max = base + 3;
    let mut doc = format!("test:\n{pad}stage:{}test\n", separator(rng));
    let items = 1 + rng.below(3);
    if rng.percent(65) {
        let entries = (0..items).map(|_| scalar(rng, max)).collect();
        let script = flow(rng, "[", "]", entries, max);
        doc += &format!("{pad}script:{}{script}\n", separator(rng));
    } else {
        doc += &format!("{pad}script:\n");
        for _ in 0..items {
            if rng.percent(45) {
                doc += &block_scalar(rng, base + 2);
                continue;
            }
            // A block entry: only its quoted scalars may go on over several lines here.
            let mut item = scalar(rng, max);
            if !item.starts_with(['"', '\'']) {
                item = item.replace('\n', " ");
            }
            doc += &format!("{pad}  -{}{item}\n", entry_separator(rng));
        }
    }
    if rng.percent(70) {
        let entries = (0..1 + rng.below(3))
            .map(|i| {
                let key = rng.pick(KEYS);
                format!("{key}{i}:{}{}", separator(rng), scalar(rng, max))
            })
            .collect();
        doc += &format!("{pad}variables: {}\n", flow(rng, "{", "}", entries, max));
    }
    // Now and then a mistake both parsers must refuse: a key left of its block, or a flow
    // collection never closed.
    let when_pad = if rng.percent(5) { &pad[1..] } else { &pad };
    doc += &format!("{when_pad}when: on_success\n");
    if rng.percent(3) {
        doc = doc.replacen(']', "", 1);
    }
    // Files written on Windows.
    if rng.percent(15) {
        doc = doc.replace('\n', "\r\n");
    }
    doc
}

/// What separates a key's `:` from its value: a space, mostly; tabs too.
fn separator(rng: &mut Rng) -> &'static str {
    rng.pick(&[" ", " ", " ", "\t", " \t", "\t\t"])
}

/// What separates a block entry's `-` from its value: a space, mostly; a tab (which libyaml
/// refuses) now and then.
fn entry_separator(rng: &mut Rng) -> &'static str {
    rng.pick(&[" ", " ", " ", " ", " ", " ", "  ", "\t", " \t"])
}

/// A block sequence entry at column `dash` holding a literal or folded scalar: any chomping,
/// sometimes an explicit indentation, lines more indented than the first, blank lines holding
/// a few spaces, tabs and trailing spaces inside lines, a comment after it.
fn block_scalar(rng: &mut Rng, dash: usize) -> String {
    let mut header = rng.pick(&["|", ">"]).to_string();
    if rng.percent(20) {
        header += &(1 + rng.below(4)).to_string();
    }
    header += rng.pick(&["", "", "-", "+"]);
    let content = dash + 2 + rng.below(2);
    let mut out = format!("{}-{}{header}\n", " ".repeat(dash), entry_separator(rng));
    for line in 0..1 + rng.below(4) {
        if line > 0 && rng.percent(20) {
            out += &format!("{}\n", rng.spaces(content + 2));
        }
        let extra = if line > 0 && rng.percent(25) {
            1 + rng.below(2)
        } else {
            0
        };
        // A line of a script may start like a block entry: it is text.
        let mut text = format!(
            "{}{}",
            rng.pick(&["", "", "", "- ", "-\t"]),
            rng.pick(WORDS)
        );
        if rng.percent(30) {
            text += rng.pick(&[" ", "\t", "  "]);
            text += rng.pick(WORDS);
        }
        if rng.percent(10) {
            text += " ";
        }
        out += &format!("{}{text}\n", " ".repeat(content + extra));
    }
    if rng.percent(20) {
        out += &format!("{}\n", rng.spaces(content));
    }
    if rng.percent(15) {
        out += &format!("{}# a comment\n", rng.spaces(dash));
    }
    out
}

/// What libyaml made of each document: `Ok(the document)` or `Err(its message)`.
fn libyaml(documents: &[String]) -> Vec<Result<serde_json::Value, String>> {
    let python = std::env::var("WHARF_TEST_LIBYAML_PYTHON").expect(
        "WHARF_TEST_LIBYAML_PYTHON names a python with PyYAML built on libyaml: run \
         scripts/test-all.sh, which installs it",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libyaml/load.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(documents).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "load.py failed");
    let results: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .into_iter()
        .map(|r| match r.get("ok") {
            Some(doc) => Ok(doc.clone()),
            None => Err(r["error"].as_str().unwrap_or_default().to_string()),
        })
        .collect()
}

#[test]
#[ignore = "needs PyYAML built on libyaml: run by scripts/test-all.sh"]
fn wharf_reads_generated_pipelines_as_libyaml_does() {
    let seed = std::env::var("WHARF_DIFF_SEED").map_or(2026, |s| s.parse().unwrap());
    let mut rng = Rng(seed);
    let documents: Vec<String> = (0..DOCUMENTS).map(|_| document(&mut rng)).collect();
    let reference = libyaml(&documents);
    let (mut accepted, mut refused) = (0, 0);
    for (doc, libyaml) in documents.iter().zip(reference) {
        let wharf = load_pipeline(FILE, &mem(&[(FILE, doc)]));
        match (libyaml, wharf) {
            (Ok(expected), Ok(loaded)) => {
                accepted += 1;
                let test = job(&loaded.pipeline, "test");
                let script = expected["test"]["script"].clone();
                let script: Vec<String> = serde_json::from_value(script).unwrap();
                assert_eq!(test.script, script, "the script of:\n{doc}");
                let variables = expected["test"]["variables"].as_object();
                let variables: Vec<(&str, &str)> = variables
                    .map(|v| v.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())))
                    .into_iter()
                    .flatten()
                    .collect();
                assert_eq!(
                    name_values(&test.variables),
                    variables,
                    "the variables of:\n{doc}"
                );
            }
            (Err(_), Err(_)) => refused += 1,
            (Ok(_), Err(e)) => panic!(
                "libyaml reads this, wharf refused it:\n{doc}\n{}",
                e.render(&|_| Some(doc.clone()))
            ),
            (Err(e), Ok(_)) => panic!("libyaml refuses this ({e}), wharf loaded it:\n{doc}"),
        }
    }
    eprintln!("seed {seed}: {accepted} documents read alike, {refused} refused by both");
    assert!(
        accepted > DOCUMENTS / 2,
        "too few documents libyaml accepts: the generator has drifted"
    );
}

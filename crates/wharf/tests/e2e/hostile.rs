//! Hostile jobs (issue 7, section 1): a pipeline that tries every way a job controls to make
//! wharf read or write outside the job's build folder, `.wharf/` and the user's project:
//! symbolic links (to `/`, to a folder outside, as a dotenv report, as a cached path, as a
//! parent folder a later restore writes through), hard links, absolute paths and `..`, dotenv
//! reports over GitLab's limits, cache keys with `/` and `..`, file variables with bad names or
//! a link left where wharf writes its scripts, and 100 MB of output.
//!
//! A sentinel tree outside the project stands for "the host": it must be byte-identical before
//! and after (nothing changed, nothing new), its secret must appear nowhere under `.wharf/`,
//! and the user's project must be unchanged. The same pipeline runs with the shell executor
//! (always) and the Docker executor (`#[ignore]` tier, busybox image built locally).

use crate::support::*;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SECRET: &str = "sentinel-secret-5f0c1e";
const HOSTNAME_LEAK: &str = "leaked-hostname-9a7b";
const IMAGE: &str = "wharf-hostile-busybox:1";

/// A tree outside the project that no job may make wharf read or change.
struct Sentinel {
    dir: tempfile::TempDir,
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    content: Vec<u8>,
}

impl Sentinel {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wharf-sentinel-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        write(&root.join("secret.txt"), &format!("{SECRET}\n"));
        write(&root.join("hostname"), &format!("LEAK={HOSTNAME_LEAK}\n"));
        write(&root.join("linkable.txt"), "hard-linked original\n");
        write(&root.join("cron.d/keep"), "existing cron entry\n");
        write(&root.join("deep/a/b.txt"), "deep\n");
        // A job in a container runs as root; a shell job as this user: both may try.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> String {
        self.path().to_str().unwrap().to_string()
    }

    /// Every entry with its kind, mode and content (links: their target).
    fn snapshot(&self) -> BTreeMap<PathBuf, Entry> {
        walkdir::WalkDir::new(self.path())
            .into_iter()
            .map(Result::unwrap)
            .map(|e| {
                let meta = e.path().symlink_metadata().unwrap();
                let (kind, content) = if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(e.path()).unwrap();
                    ("link", target.into_os_string().into_encoded_bytes())
                } else if meta.is_dir() {
                    ("dir", Vec::new())
                } else {
                    ("file", std::fs::read(e.path()).unwrap())
                };
                let rel = e.path().strip_prefix(self.path()).unwrap().to_path_buf();
                (
                    rel,
                    Entry {
                        kind,
                        mode: meta.mode(),
                        content,
                    },
                )
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Executor {
    Shell,
    Docker,
}

/// The pipeline: every job is hostile; `s` is the sentinel's absolute path. `output_bytes` is
/// what the noisy job prints.
fn hostile_pipeline(s: &str, executor: Executor, output_bytes: u64) -> String {
    let rel = s.trim_start_matches('/');
    let up = "../".repeat(24);
    let image = match executor {
        Executor::Shell => String::new(),
        Executor::Docker => format!("default: {{image: {IMAGE}}}\n"),
    };
    format!(
        r#"{image}stages: [one, two, three]

read:
  stage: one
  script:
    - ln -s / hostroot
    - ln -s {s} sentinel
    - mkdir -p inside && echo inside > inside/ok.txt && ln -s inside inlink
    - ln {s}/linkable.txt hard.txt || echo "no hard link from here"
  artifacts:
    paths:
      - hostroot{s}/secret.txt
      - sentinel/secret.txt
      - sentinel
      - {s}/secret.txt
      - {up}{rel}/secret.txt
      - inlink/ok.txt
      - $CI_PROJECT_DIR/inside/ok.txt
      - hard.txt
      - hostroot{s}/*

write-a:
  stage: one
  script: ["ln -s {s}/cron.d out"]
  artifacts: {{paths: [out]}}

write-b:
  stage: two
  needs: []
  script: ["mkdir -p out", "echo pwned > out/pwned"]
  artifacts: {{paths: [out]}}

cache-link:
  stage: one
  script: ["ln -s {s}/cron.d cached"]
  cache: {{key: k-link, paths: [cached]}}

cache-dir:
  stage: two
  needs: []
  script: ["mkdir -p cached", "echo pwned > cached/pwned"]
  cache: {{key: k-dir, paths: [cached]}}

cache-keys:
  stage: one
  script: ["echo x > x.txt"]
  # GitLab refuses a key written with `/`, `%2F` or `..` (and so does wharf's loader); these
  # come from variables, expanded when the job runs, which no load-time check sees.
  variables:
    ESCAPING_KEY: "{up}{rel}/escaped-key"
    DOTDOT_KEY: ".."
    ENCODED_KEY: "feature%2F..%2F..%2F{up}x"
  cache:
    - {{key: $ESCAPING_KEY, paths: [x.txt]}}
    - {{key: $DOTDOT_KEY, paths: [x.txt]}}
    - {{key: $ENCODED_KEY, paths: [x.txt]}}
    - {{key: k-abs, paths: ["{s}/secret.txt", "{up}{rel}", "hostroot{s}"]}}

dotenv-link:
  stage: one
  allow_failure: true
  script: ["ln -s {s}/hostname link.env"]
  artifacts: {{reports: {{dotenv: link.env}}}}

dotenv-absolute:
  stage: one
  allow_failure: true
  script: ["true"]
  artifacts: {{reports: {{dotenv: {s}/hostname}}}}

dotenv-dotdot:
  stage: one
  allow_failure: true
  script: ["true"]
  artifacts: {{reports: {{dotenv: "{up}{rel}/hostname"}}}}

dotenv-parent-link:
  stage: one
  allow_failure: true
  script: ["ln -s {s} dir"]
  artifacts: {{reports: {{dotenv: dir/hostname}}}}

dotenv-too-many:
  stage: one
  allow_failure: true
  script: ["i=0; while [ $i -lt 25 ]; do echo V$i=$i >> many.env; i=$((i+1)); done"]
  artifacts: {{reports: {{dotenv: many.env}}}}

dotenv-too-big:
  stage: one
  allow_failure: true
  script: ["head -c 6000 /dev/zero | tr '\\0' a > big; printf 'BIG=' > big.env; cat big >> big.env"]
  artifacts: {{reports: {{dotenv: big.env}}}}

dotenv-bad-name:
  stage: one
  allow_failure: true
  script: ["echo 'BAD.NAME=1' > bad.env"]
  artifacts: {{reports: {{dotenv: bad.env}}}}

tmp-link:
  stage: one
  script:
    - ln -sf {s}/after-target "$(dirname "$FILEVAR")/after_script.sh"
  after_script: ["echo after-ran"]

noisy:
  stage: one
  script:
    - (yes 'a line of job output, again and again' | head -c {output_bytes}) || true
    - head -c 2000000 /dev/zero | tr '\0' y
    - echo; echo '42.5% covered'

  coverage: '/(\d+\.\d+)% covered/'

consume:
  stage: three
  needs: [read, write-a, write-b, cache-link, cache-dir, dotenv-link, dotenv-absolute, dotenv-parent-link]
  cache:
    - {{key: k-link, policy: pull, paths: [cached]}}
    - {{key: k-dir, policy: pull, paths: [cached]}}
  script:
    - echo "LEAK is [$LEAK]"
    - cat hostroot{s}/secret.txt 2>/dev/null | sed 's/^/read=/' || true
    - ls -la . out cached || true
    - echo appended >> hard.txt || true
"#
    )
}

/// The peak resident memory of a process (`VmHWM`), in KiB, while it runs.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Outcome {
    run: Run,
    log: String,
    peak_kib: u64,
}

/// Run `wharf run` in `p` with `args`, output to a file (never into this process's memory),
/// sampling wharf's peak memory until it exits.
fn run_measured(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let out_path = p.home.path().join("wharf-output.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = p
        .wharf()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Only the end of the console output: the noisy job's lines are not needed here.
    let mut text = Vec::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_end(&mut text)
        .unwrap();
    let keep: Vec<u8> = text
        .split(|&b| b == b'\n')
        .filter(|l| {
            !l.ends_with(b"a line of job output, again and again") && !l.ends_with(b"yyyyyyyy")
        })
        .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    let log = std::fs::read_to_string(p.path().join(".wharf/logs/consume.log")).unwrap_or_default();
    Outcome {
        run: Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&keep).into_owned(),
            stderr: String::new(),
        },
        log,
        peak_kib: peak,
    }
}

fn job_log(p: &Project, job: &str, output: &str) -> String {
    std::fs::read_to_string(p.path().join(format!(".wharf/logs/{job}.log")))
        .unwrap_or_else(|e| panic!("log of {job}: {e}; output:\n{output}"))
}

/// Everything under `.wharf/` that is a regular file, with its bytes (links are not followed).
fn wharf_files(p: &Project) -> Vec<(PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(p.path().join(".wharf"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        // The noisy job's 100 MB log holds nothing but its own lines.
        .filter(|e| !e.path().ends_with("logs/noisy.log") && !e.path().ends_with("noisy.log.txt"))
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn run_hostile_suite(executor: Executor, output_bytes: u64, env: &[(&str, &str)]) {
    let sentinel = Sentinel::new();
    let s = sentinel.path_str();
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            &hostile_pipeline(&s, executor, output_bytes),
        ),
        ("src/main.c", "int main(void) { return 0; }\n"),
        (
            "vars.yml",
            "FILEVAR: {value: file-variable-content, type: file}\n",
        ),
    ]);
    let before = sentinel.snapshot();
    let user_before = p.user_tree();
    let executor_arg = match executor {
        Executor::Shell => "shell",
        Executor::Docker => "docker",
    };
    let mut args = vec![
        "run",
        "--executor",
        executor_arg,
        "--variables-file",
        "vars.yml",
        "--concurrency",
        "2",
    ];
    if executor == Executor::Docker {
        args.extend(["--pull-policy", "never"]);
    }
    let outcome = run_measured(&p, &args, env);
    let all = outcome.run.all();
    eprintln!(
        "wharf's peak memory (VmHWM) with {output_bytes} bytes of job output: {} KiB",
        outcome.peak_kib
    );

    // The host is untouched: same entries, same bytes, same modes, nothing new.
    assert_eq!(
        before,
        sentinel.snapshot(),
        "the sentinel tree changed; output:\n{all}"
    );
    assert_eq!(user_before, p.user_tree(), "the user's project changed");
    // Nothing outside was read into .wharf (logs, artifacts, caches, dotenv, builds).
    for (path, bytes) in wharf_files(&p) {
        for needle in [SECRET, HOSTNAME_LEAK] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                path.display()
            );
        }
    }

    // Why: each refusal says what and where.
    let read = job_log(&p, "read", &all);
    assert!(read.contains("not uploaded"), "{read}");
    assert!(read.contains("leads outside"), "{read}");
    assert!(read.contains("an absolute path"), "{read}");
    let artifacts = p.path().join(".wharf/artifacts/read");
    // Links are kept as links; a path through a link inside the tree is fine.
    assert!(
        artifacts
            .join("sentinel")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(artifacts.join("inlink/ok.txt")).unwrap(),
        "inside\n"
    );
    // An absolute path inside the project is the relative path it names, as in GitLab.
    assert!(artifacts.join("inside/ok.txt").is_file(), "{read}");
    for job in [
        "dotenv-link",
        "dotenv-absolute",
        "dotenv-dotdot",
        "dotenv-parent-link",
    ] {
        let log = job_log(&p, job, &all);
        assert!(
            log.contains("ERROR: artifacts: reports: dotenv"),
            "{job}: {log}"
        );
        assert!(!p.path().join(format!(".wharf/dotenv/{job}.json")).exists());
    }
    assert!(job_log(&p, "dotenv-link", &all).contains("is a symbolic link"));
    assert!(job_log(&p, "dotenv-too-many", &all).contains("at most 20"));
    assert!(job_log(&p, "dotenv-too-big", &all).contains("less than 5 KiB"));
    assert!(
        job_log(&p, "dotenv-bad-name", &all).contains("`BAD.NAME` is not a valid variable name")
    );
    // Cache keys are sanitised as GitLab's runner does, and stay under .wharf/cache.
    let keys = job_log(&p, "cache-keys", &all);
    assert!(keys.contains("sanitized to"), "{keys}");
    assert!(keys.contains("could not be sanitized"), "{keys}");
    // The after_script was written over the link the job left, not through it.
    assert!(job_log(&p, "tmp-link", &all).contains("after-ran"));
    // 100 MB of output went through a bounded path: the coverage is found at its end, and
    // wharf never held the output in memory.
    let noisy = std::fs::metadata(p.path().join(".wharf/logs/noisy.log")).unwrap();
    assert!(noisy.len() >= output_bytes, "{}", noisy.len());
    assert!(
        outcome.peak_kib < 96 * 1024,
        "wharf's peak memory was {} KiB for {output_bytes} bytes of output",
        outcome.peak_kib
    );
    // The consumer got what it should, and no leaked variable.
    assert!(outcome.log.contains("LEAK is []"), "{}", outcome.log);
    assert!(outcome.log.contains("Job succeeded"), "{}", outcome.log);
    assert!(
        std::fs::read_to_string(p.path().join(".wharf/builds/consume/out/pwned"))
            .unwrap()
            .contains("pwned")
    );
    let summary = all
        .lines()
        .find(|l| l.starts_with("noisy ") && l.contains("passed"))
        .unwrap_or_else(|| panic!("no summary line for noisy:\n{all}"));
    assert!(summary.contains("42.5"), "coverage not found: {summary}");

    // A file variable whose name leaves the temp folder is refused at its key.
    let bad_vars = format!(
        "\"{}{}/from-variable\": {{value: x, type: file}}\n",
        "../".repeat(24),
        s.trim_start_matches('/')
    );
    write(&p.path().join("bad-vars.yml"), &bad_vars);
    let mut bad_args = args.clone();
    bad_args[4] = "bad-vars.yml";
    let refused = p.run(&bad_args);
    assert_ne!(refused.code, 0, "{}", refused.all());
    refused.assert_contains("bad-vars.yml:1:1");
    refused.assert_contains("is not a valid variable name");
    assert_eq!(before, sentinel.snapshot());
}

#[test]
fn hostile_jobs_cannot_reach_outside_with_the_shell_executor() {
    run_hostile_suite(Executor::Shell, 100_000_000, &[]);
}

/// The same with wharf-fs's checked walk, as on kernels without `openat2` (before 5.6).
#[test]
fn hostile_jobs_cannot_reach_outside_without_openat2() {
    run_hostile_suite(Executor::Shell, 1_000_000, &[("WHARF_FS_RESOLVER", "walk")]);
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn hostile_jobs_cannot_reach_outside_with_the_docker_executor() {
    load_busybox_into_docker(IMAGE);
    run_hostile_suite(Executor::Docker, 100_000_000, &[]);
    issue_pipeline_leaves_the_host_untouched();
    let _ = Command::new("docker").args(["rmi", IMAGE]).output();
}

/// The pipeline of issue 7 as written (the host's real /etc/shadow and /etc/cron.d), Docker
/// executor, run as root.
fn issue_pipeline_leaves_the_host_untouched() {
    let pipeline = format!(
        r#"default: {{image: {IMAGE}}}
stages: [one, two, three]
read:    {{stage: one, script: ["ln -s / hostroot", "ln -s /etc/hostname e.env"],
          artifacts: {{paths: ["hostroot/etc/shadow"], reports: {{dotenv: e.env}}}}}}
write-a: {{stage: one, script: ["ln -s /etc/cron.d out"], artifacts: {{paths: [out]}}}}
write-b: {{stage: two, needs: [], script: ["mkdir -p out; echo X > out/pwned"], artifacts: {{paths: [out]}}}}
consume: {{stage: three, needs: [read, write-a, write-b], script: ["cat hostroot/etc/shadow"]}}
"#
    );
    let p = Project::new(&[(".gitlab-ci.yml", &pipeline)]);
    let cron = Path::new("/etc/cron.d/pwned");
    assert!(!cron.exists(), "{} exists before the test", cron.display());
    let run = p.run(&["run", "--executor", "docker", "--pull-policy", "never"]);
    assert!(
        !cron.exists(),
        "wharf wrote {}:\n{}",
        cron.display(),
        run.all()
    );
    assert!(
        !p.path()
            .join(".wharf/artifacts/read/hostroot/etc/shadow")
            .exists()
    );
    let shadow = std::fs::read("/etc/shadow").unwrap_or_default();
    for (path, bytes) in wharf_files(&p) {
        if shadow.len() > 16 {
            assert!(
                !bytes.windows(shadow.len()).any(|w| w == shadow.as_slice()),
                "/etc/shadow copied into {}",
                path.display()
            );
        }
    }
    run.assert_contains("hostroot/etc/shadow: not uploaded");
    // The symlinked dotenv report fails its job; the consumer then does not run.
    run.assert_contains("is a symbolic link");
}

//! Shared helpers: temp projects, running the binary with a clean environment, tree snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SEED_PIPELINE: &str = include_str!("../../../../examples/seed/.gitlab-ci.yml");
pub const SEED_BUILD_VARS: &str = include_str!("../../../../examples/seed/build-vars.sh");
pub const NPM_STAND_IN: &str = include_str!("../../../../examples/seed/bin/npm");

pub struct Project {
    pub dir: tempfile::TempDir,
    /// A HOME of its own, so the host's ~/.docker never leaks into a test.
    pub home: tempfile::TempDir,
}

impl Project {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-")
            .tempdir()
            .unwrap();
        for (path, text) in files {
            write(&dir.path().join(path), text);
        }
        Self {
            dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A project holding only `.gitlab-ci.yml`, with `pipeline` as its text.
    pub fn pipeline(pipeline: &str) -> Self {
        Self::new(&[(".gitlab-ci.yml", pipeline)])
    }

    /// The seed pipeline with its image replaced by `image` (None: keep the original).
    pub fn seed(image: Option<&str>) -> Self {
        let pipeline = match image {
            Some(img) => SEED_PIPELINE.replace("docker-registry.samchu.com/node:10-alpine", img),
            None => SEED_PIPELINE.to_string(),
        };
        let p = Self::new(&[
            (".gitlab-ci.yml", &pipeline),
            ("build-vars.sh", SEED_BUILD_VARS),
            ("src/app.css", "body {}\n"),
        ]);
        if image.is_none() {
            // The shell executor needs the stand-in npm on the host; in images it is built in.
            write(&p.path().join("bin/npm"), NPM_STAND_IN);
            make_executable(&p.path().join("bin/npm"));
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn wharf(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.current_dir(self.path())
            .env_remove("DOCKER_AUTH_CONFIG")
            .env_remove("DOCKER_CONFIG")
            .env_remove("NO_COLOR")
            .env("HOME", self.home.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.wharf().args(args).output().unwrap())
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every file outside `.wharf/` with its content: what the user owns.
    pub fn user_tree(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(self.path())
            .into_iter()
            .filter_entry(|e| e.file_name() != ".wharf")
            .filter_map(Result::ok)
            .map(|e| {
                let rel = e.path().strip_prefix(self.path()).unwrap().to_path_buf();
                let content = if e.file_type().is_file() {
                    std::fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                (rel, content)
            })
            .collect()
    }

    /// All text under `.wharf/` (logs, artifacts, caches, builds), for secret checks.
    pub fn wharf_dir_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(self.path().join(".wharf"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
            .collect()
    }

    /// Panics if any of `secrets` appears in the run's output or anywhere under `.wharf/`.
    pub fn assert_no_secrets(&self, run: &Run, secrets: &[&str]) {
        for s in secrets {
            assert!(
                !run.stdout.contains(s),
                "secret {s:?} in stdout:\n{}",
                run.stdout
            );
            assert!(
                !run.stderr.contains(s),
                "secret {s:?} in stderr:\n{}",
                run.stderr
            );
            for (path, bytes) in self.wharf_dir_bytes() {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "secret {s:?} in {}",
                    path.display()
                );
            }
        }
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code; output:\n{}", self.all());
        self
    }

    #[track_caller]
    pub fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.all().contains(needle),
            "expected {needle:?} in:\n{}",
            self.all()
        );
        self
    }

    #[track_caller]
    pub fn assert_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.all().contains(needle),
            "unexpected {needle:?} in:\n{}",
            self.all()
        );
        self
    }
}

/// List the entries of a tar file (with the system `tar`).
pub fn tar_list(path: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("tf").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The seed image (busybox with the stand-in npm) as an OCI layout, built once per test binary.
/// The seed image with a file no other image has: its own layer and image id, so a test that
/// removes it from dockerd when done cannot race another test's pull of a shared image (dockerd
/// deletes an image whose last tag goes, even while another tag of it is being pulled).
pub fn unique_seed_layout(dir: &std::path::Path) -> wharf_testkit::OciLayout {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mark = format!("{}-{n}\n", std::process::id());
    let npm = ("/usr/local/bin/npm", wharf_testkit::npm_stand_in(), 0o755);
    let id = ("/etc/wharf-test-image", mark.as_bytes(), 0o644);
    wharf_testkit::build_busybox_image(dir, &[npm, id]).unwrap()
}

pub fn seed_layout() -> &'static wharf_testkit::OciLayout {
    static LAYOUT: std::sync::OnceLock<wharf_testkit::OciLayout> = std::sync::OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = wharf_testkit::process_tempdir("wharf-fixture-").unwrap();
        let npm = ("/usr/local/bin/npm", wharf_testkit::npm_stand_in(), 0o755);
        wharf_testkit::build_busybox_image(&dir, &[npm]).unwrap()
    })
}

/// Builds the busybox test image and loads it into dockerd as `tag`; fails (not skips) the
/// test when dockerd does not answer.
pub fn load_busybox_into_docker(tag: &str) {
    assert!(
        docker_answers(),
        "dockerd does not answer: run through scripts/test-all.sh"
    );
    let image_dir = tempfile::tempdir().unwrap();
    wharf_testkit::build_busybox_image(image_dir.path(), &[])
        .unwrap()
        .load_into_docker(tag)
        .unwrap();
}

/// Whether dockerd answers; the Docker tiers fail (not skip) without it.
pub fn docker_answers() -> bool {
    Command::new("docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs git in `dir` as a throwaway identity with signing off; a failure fails the test.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The name prefix of the containers wharf starts for the project at `p`: `wharf-`, the
/// alphanumerics of the project's directory name, `-`.
pub fn container_prefix(p: &Project) -> String {
    let name = p.path().file_name().unwrap().to_string_lossy();
    format!(
        "wharf-{}-",
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    )
}

/// The names of the project's containers, running or not, one a line.
pub fn containers_of(p: &Project) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name={}", container_prefix(p)),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[track_caller]
pub fn assert_no_containers(p: &Project) {
    assert_eq!(containers_of(p), "", "containers left behind");
}

/// What `login` stored for `host` in the Docker config `text`: for a token registry a refresh
/// token and never the password (like `docker login`), otherwise the basic `auth` of
/// `user:password`.
#[track_caller]
pub fn assert_login_stored(
    text: &str,
    host: &str,
    token_registry: bool,
    user: &str,
    password: &str,
) {
    let stored: serde_json::Value = serde_json::from_str(text).unwrap();
    let entry = &stored["auths"][host];
    if token_registry {
        assert!(
            entry["identitytoken"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{entry}"
        );
        assert!(!text.contains(password));
    } else {
        assert_eq!(entry["auth"], b64(&format!("{user}:{password}")), "{entry}");
    }
}

/// A system user `name` (created once, in `groups` when given; the root tiers create it): its uid
/// and gid.
pub fn system_user(name: &str, groups: Option<&str>) -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            })
    };
    if id("-u").is_none() {
        let mut add = Command::new("useradd");
        add.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if let Some(groups) = groups {
            add.args(["-G", groups]);
        }
        let out = add.arg(name).output().unwrap();
        // Another test process may have created it meanwhile.
        assert!(
            out.status.success() || id("-u").is_some(),
            "useradd: {out:?}"
        );
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// `wharf` as `uid:gid` (util-linux's `setpriv`, with the user's groups) in project `p`, after
/// `p` and `home` are given to that user: HOME is `home`, the image store `home/store`, and no
/// Docker daemon answers. The caller adds the arguments.
pub fn wharf_as(uid: u32, gid: u32, p: &Project, home: &Path) -> Command {
    for dir in [p.path(), home] {
        let ok = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
        .args(["--init-groups", "--", env!("CARGO_BIN_EXE_wharf")])
        .current_dir(p.path())
        .env("HOME", home)
        .env("WHARF_HOME", home.join("store"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("DOCKER_CONFIG");
    command
}

/// Runs `cmd` to its end like `Command::output`, but kills it and fails the test (with what it
/// printed so far) when it takes longer than `limit`: a hung child must fail its test, not
/// hold the whole suite until CI's time limit.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::Read as _;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on threads so a chatty child never blocks on a full pipe while we wait.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not end within {limit:?}; it printed:\n{}{}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Sets its flag when dropped, also while a panic unwinds: a thread that others wait on tells
/// them it has ended, whichever way it ended.
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

//! Docker tier: images whose config runs their commands as a non-root user (a uid, a name from
//! the image's /etc/passwd, `uid:gid`) and `image: docker: user:` overriding it (issue 8, part 3).
//! Every job must read its scripts and file variables, write in its build folder (sources,
//! restored caches and artifacts included), and wharf must still collect what it made.

use crate::docker::{give_to_docker_user, wharf_as_docker_user};
use crate::support::*;
use std::process::Command;

/// The image's `/etc/passwd`: `builder` is uid 1001 in group 1001; 1234 is in no entry.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1001:1001:builder:/home/builder:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nbuilder:x:1001:\nnogroup:x:65534:\n";

/// Images built from one busybox base, each with another `USER` in its config; removed from
/// dockerd when dropped.
struct UserImages {
    tags: Vec<String>,
}

impl UserImages {
    /// `users`: the config `User` of each image; the tags are in the same order.
    fn build(users: &[&str]) -> Self {
        assert!(
            docker_answers(),
            "dockerd does not answer: run through scripts/test-all.sh"
        );
        // Tests run at once in one process: each builds (and removes) images of its own.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stem = format!("wharf-e2e-user-{}-{n}", std::process::id());
        let base = format!("{stem}:base");
        let layout_dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8], u32); 3] = [
            ("/etc/passwd", PASSWD.as_bytes(), 0o644),
            ("/etc/group", GROUP.as_bytes(), 0o644),
            ("/etc/wharf-test-image", stem.as_bytes(), 0o644),
        ];
        wharf_testkit::build_busybox_image(layout_dir.path(), &files)
            .unwrap()
            .load_into_docker(&base)
            .unwrap();
        let mut tags = vec![base.clone()];
        for (n, user) in users.iter().enumerate() {
            let tag = format!("{stem}:user{n}");
            let script = format!(
                "cid=$(docker create {base}) && docker export $cid | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'USER {user}' - {tag} >/dev/null; status=$?; docker rm $cid >/dev/null; exit $status"
            );
            let ok = Command::new("sh").arg("-c").arg(&script).status().unwrap();
            assert!(ok.success(), "building {tag} with USER {user}");
            tags.push(tag);
        }
        Self { tags }
    }

    /// The image whose config runs as `users[n]`.
    fn tag(&self, n: usize) -> &str {
        &self.tags[n + 1]
    }
}

impl Drop for UserImages {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .arg("rmi")
            .arg("-f")
            .args(&self.tags)
            .output();
    }
}

/// One job per way of naming the user, and a later job working on the first one's artifacts.
/// Each job prints who it runs as, reads its file variable, writes in the build folder, and
/// leaves an artifact, a cache and a dotenv report.
fn pipeline(images: &UserImages) -> String {
    let job = r#"
  script:
    - echo "whoami=$(id -u):$(id -g)"
    - test "$(cat "$SECRET_FILE")" = file-content && echo file-variable-readable
    - if [ -f out/result ]; then echo cache-restored; fi
    - mkdir -p out && echo "$CI_JOB_NAME" > out/result
    - echo FROM_DOTENV=yes > build.env
    # The job's own file in its script folder, which wharf writes in again before after_script.
    - echo note > "$CI_PROJECT_DIR.tmp/note"
  after_script:
    - echo "after-script-ran-as=$(id -u)"
  cache:
    key: "$CI_JOB_NAME"
    paths: [out/]
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
"#;
    format!(
        "stages: [test, use]\nby-uid:\n  image: {}{job}by-name:\n  image: {}{job}by-uid-gid:\n  image: {}{job}overridden:\n  image:\n    name: {}\n    docker:\n      user: \"1234\"{job}use:\n  stage: use\n  image: {}\n  needs: [by-name]\n  script:\n    - echo \"from-artifact=$(cat out/result)\"\n    - echo more >> out/result\n    - test \"$FROM_DOTENV\" = yes && echo dotenv-passed\n",
        images.tag(0),
        images.tag(1),
        images.tag(2),
        images.tag(1),
        images.tag(1),
    )
}

fn variables_file(p: &Project) -> String {
    let file = p.home.path().join("variables.yml");
    write(&file, "SECRET_FILE:\n  value: file-content\n  type: file\n");
    file.to_string_lossy().into_owned()
}

/// A file outside the project, and a link to it in the project: handing the job's folders
/// over to its user must change neither the file's owner nor its mode.
struct LinkOut {
    _dir: tempfile::TempDir,
    target: std::path::PathBuf,
    owner_and_mode: (u32, u32),
}

impl LinkOut {
    fn plant(p: &Project) -> Self {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("host-secret");
        write(&target, "host secret\n");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, p.path().join("link-out")).unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        Self {
            _dir: dir,
            owner_and_mode: (meta.uid(), meta.mode()),
            target,
        }
    }

    #[track_caller]
    fn assert_untouched(&self) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.target).unwrap();
        assert_eq!((meta.uid(), meta.mode()), self.owner_and_mode);
    }
}

/// What every run of [`pipeline`] must show, whoever runs wharf.
fn assert_every_user_ran(p: &Project, run: &Run) {
    run.assert_code(0);
    for (job, who) in [
        ("by-uid", "1001:1001"),
        ("by-name", "1001:1001"),
        ("by-uid-gid", "1001:2002"),
        // Docker gives a uid without a passwd entry the group 0, as it does here.
        ("overridden", "1234:0"),
    ] {
        let log = p.read(&format!(".wharf/logs/{job}.log"));
        assert!(log.contains(&format!("whoami={who}")), "{job}: {log}");
        assert!(log.contains("file-variable-readable"), "{job}: {log}");
        let uid = who.split(':').next().unwrap_or_default();
        assert!(
            log.contains(&format!("after-script-ran-as={uid}")),
            "{job}: {log}"
        );
        assert_eq!(
            p.read(&format!(".wharf/artifacts/{job}/out/result")),
            format!("{job}\n"),
            "{job}'s artifact was not collected"
        );
    }
    let log = p.read(".wharf/logs/use.log");
    assert!(log.contains("from-artifact=by-name"), "{log}");
    assert!(log.contains("dotenv-passed"), "{log}");
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn images_running_as_a_non_root_user_can_use_their_build_and_script_folders() {
    let images = UserImages::build(&["1001", "builder", "1001:2002"]);
    let p = Project::pipeline(&pipeline(&images));
    let link_out = LinkOut::plant(&p);
    let vars = variables_file(&p);
    let run = p.run(&["run", "--pull-policy", "never", "--variables-file", &vars]);
    assert_every_user_ran(&p, &run);
    // Again: the caches come back into folders the job's user can write, and wharf can clear
    // what the jobs left in their build folders.
    let run = p.run(&["run", "--pull-policy", "never", "--variables-file", &vars]);
    assert_every_user_ran(&p, &run);
    assert!(
        p.read(".wharf/logs/by-name.log").contains("cache-restored"),
        "{}",
        p.read(".wharf/logs/by-name.log")
    );
    link_out.assert_untouched();
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and root: run by scripts/test-all.sh"]
fn a_non_root_wharf_runs_images_of_another_non_root_user_and_gets_their_files_back() {
    use std::os::unix::fs::MetadataExt;
    let images = UserImages::build(&["1001", "builder", "1001:2002"]);
    let p = Project::pipeline(&pipeline(&images));
    let vars = variables_file(&p);
    let (uid, _) = give_to_docker_user(&p);
    let as_user = || {
        wharf_as_docker_user(
            &p,
            &["run", "--pull-policy", "never", "--variables-file", &vars],
        )
    };
    // Planted after the chown above: the file stays root's, 0600.
    let link_out = LinkOut::plant(&p);
    assert_every_user_ran(&p, &as_user());
    link_out.assert_untouched();
    // The second run clears the build folders the first one's jobs wrote in.
    assert_every_user_ran(&p, &as_user());
    // Other users of this host cannot reach the folders opened to the job's user.
    for dir in [".wharf/builds", ".wharf/tmp"] {
        let meta = std::fs::metadata(p.path().join(dir)).unwrap();
        assert_eq!(meta.mode() & 0o077, 0, "{dir} is open to others");
        assert_eq!(meta.uid(), uid, "{dir}");
    }
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn a_user_the_image_does_not_have_fails_the_job_naming_the_image_and_the_user() {
    let images = UserImages::build(&["ghost"]);
    let p = Project::pipeline(&format!(
        "from-config:\n  image: {image}\n  script: [echo never]\nfrom-job:\n  image:\n    name: {base}\n    docker:\n      user: nosuch\n  script: [echo never]\n",
        image = images.tag(0),
        base = images.tags[0],
    ));
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(1).assert_lacks("never\n");
    let from_config = p.read(".wharf/logs/from-config.log");
    assert!(
        from_config.contains("user `ghost`")
            && from_config.contains(images.tag(0))
            && from_config.contains("/etc/passwd"),
        "{from_config}"
    );
    let from_job = p.read(".wharf/logs/from-job.log");
    assert!(
        from_job.contains("user `nosuch`")
            && from_job.contains(&images.tags[0])
            && from_job.contains(".gitlab-ci.yml:"),
        "{from_job}"
    );
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn a_named_user_is_found_through_a_linked_etc_passwd() {
    let mut images = UserImages::build(&["builder"]);
    // The same image with /etc/passwd a relative link to the real file: dockerd archives the
    // link itself, which wharf follows as the container would.
    let linked = format!("{}-linked", images.tag(0));
    let script = format!(
        "cid=$(docker create --network none --user 0 {image} sh -c 'mv /etc/passwd /etc/passwd.real && ln -s passwd.real /etc/passwd') && docker start -a $cid && docker export $cid | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'USER builder' - {linked} >/dev/null; status=$?; docker rm $cid >/dev/null; exit $status",
        image = images.tag(0)
    );
    let ok = Command::new("sh").arg("-c").arg(&script).status().unwrap();
    images.tags.push(linked.clone());
    assert!(ok.success(), "building {linked}");
    let p = Project::pipeline(&format!(
        "linked:\n  image: {linked}\n  script:\n    - test -L /etc/passwd\n    - echo \"whoami=$(id -u):$(id -g)\" > made-by-job.txt\n    - cat made-by-job.txt\n"
    ));
    p.run(&["run", "--pull-policy", "never"])
        .assert_code(0)
        .assert_contains("whoami=1001:1001");
}

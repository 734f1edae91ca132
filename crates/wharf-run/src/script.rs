//! The shell scripts a job runs: `before_script` + `script` in one shell, `after_script` in its
//! own, each command echoed as `$ cmd` (green) and the first failing command ending the script.

/// Runs the first shell found in the image, as gitlab-runner's shell detection does; the script
/// path is the first argument.
pub const DETECT_SHELL: &str = "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; do if [ -x \"$s\" ]; then exec \"$s\" \"$@\"; fi; done; echo 'ERROR: no shell found in the image (looked for bash and sh in /usr/local/bin, /usr/bin, /bin, /busybox)' >&2; exit 127";

/// How the files a job's scripts make in its folders get back to wharf's user, when the scripts
/// run as another user: run on the script's exit, so wharf can collect and delete them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandBack {
    /// The scripts run as root: `chown -R` to wharf's `uid:gid`.
    Chown { owner: String, dirs: Vec<String> },
    /// The scripts run as a user that cannot give files away: `chmod a+rwX` what it made
    /// (wharf's folders around them are closed to other users of the host).
    OpenModes { dirs: Vec<String> },
}

impl HandBack {
    fn command(&self) -> String {
        let quoted = |dirs: &[String]| dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ");
        match self {
            Self::Chown { owner, dirs } => format!("chown -R {} {}", quote(owner), quoted(dirs)),
            // Not `chmod -R`: busybox's stops going down at the first folder it may not
            // change (the build folder itself is wharf's), so one chmod per entry. Links are
            // left alone: chmod would follow them.
            Self::OpenModes { dirs } => {
                format!("find {} ! -type l -exec chmod a+rwX {{}} +", quoted(dirs))
            }
        }
    }
}

/// Build a script for `commands`, run in `workdir`; `hand_back` runs on its exit, whatever
/// the exit.
pub fn build(commands: &[String], workdir: &str, hand_back: Option<&HandBack>) -> String {
    let mut s = String::new();
    // One stream: stdout and stderr reach the log in the order they were written (the Engine
    // API delivers two pipes, whose relative order is otherwise lost).
    s.push_str("exec 2>&1\n");
    // pipefail where the shell has it (bash, busybox ash); dash lacks it. `command` keeps a
    // special builtin's error from exiting the shell, so no subshell is forked to probe for it
    // (a fork here delayed every job's first command by a millisecond or more).
    s.push_str("command set -o pipefail 2>/dev/null || true\n");
    s.push_str("set -e\n");
    if let Some(hand_back) = hand_back {
        s.push_str(&format!(
            "trap {} EXIT\n",
            quote(&format!("{} 2>/dev/null || true", hand_back.command()))
        ));
    }
    s.push_str(&format!("cd {}\n", quote(workdir)));
    for cmd in commands {
        let mut lines = cmd.lines();
        let first = lines.next().unwrap_or_default();
        let shown = if lines.next().is_some() {
            format!("$ {first} # collapsed multi-line command")
        } else {
            format!("$ {first}")
        };
        s.push_str(&format!(
            "printf '\\033[32;1m%s\\033[0;m\\n' {}\n",
            quote(&shown)
        ));
        s.push_str(cmd);
        s.push('\n');
    }
    s
}

/// POSIX single-quote a string.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(script: &str) -> (i32, String) {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn echoes_commands_and_stops_at_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let cmds = vec![
            "echo 'it''s' \"$HOME\" >/dev/null; echo one".to_string(),
            "false".into(),
            "echo never".into(),
        ];
        let (code, out) = run(&build(&cmds, dir.path().to_str().unwrap(), None));
        assert_eq!(code, 1);
        assert!(
            out.contains("$ echo 'it''s' \"$HOME\" >/dev/null; echo one"),
            "{out}"
        );
        assert!(out.contains("one\n"));
        assert!(out.contains("$ false"));
        assert!(!out.contains("never"));
    }

    #[test]
    fn multi_line_commands_are_collapsed_in_the_echo_but_run_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cmds = vec![
            "if true; then\n  echo inside\nfi".to_string(),
            "exit 3".into(),
        ];
        let (code, out) = run(&build(&cmds, dir.path().to_str().unwrap(), None));
        assert_eq!(code, 3);
        assert!(out.contains("$ if true; then # collapsed multi-line command"));
        assert!(out.contains("inside"));
    }

    #[test]
    fn the_hand_back_runs_on_exit_keeps_the_exit_code_and_survives_quotes_in_paths() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("it's a dir");
        std::fs::create_dir(&odd).unwrap();
        let odd_path = odd.to_str().unwrap().to_string();
        let hand_back = HandBack::OpenModes {
            dirs: vec![odd_path.clone()],
        };
        let commands = vec![
            "umask 077".to_string(),
            "mkdir made && echo x > made/file".into(),
            "exit 3".into(),
        ];
        let (code, _) = run(&build(&commands, &odd_path, Some(&hand_back)));
        assert_eq!(code, 3);
        let mode = |rel: &str| {
            std::fs::metadata(odd.join(rel))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("made"), 0o777);
        assert_eq!(mode("made/file"), 0o666);
    }

    #[test]
    fn pipefail_where_available() {
        let dir = tempfile::tempdir().unwrap();
        let (code, _) = run(&build(
            &["false | cat".to_string()],
            dir.path().to_str().unwrap(),
            None,
        ));
        // /bin/sh is dash on Debian (no pipefail): the pipeline's status is cat's there.
        let has_pipefail = Command::new("sh")
            .arg("-c")
            .arg("set -o pipefail")
            .status()
            .unwrap()
            .success();
        assert_eq!(code, if has_pipefail { 1 } else { 0 });
    }
}

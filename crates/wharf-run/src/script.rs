//! The shell scripts a job runs: `before_script` + `script` in one shell, `after_script` in its
//! own, each command echoed as `$ cmd` (green) and the first failing command ending the script.

/// Runs the first shell found in the image, as gitlab-runner's shell detection does; the script
/// path is the first argument.
pub const DETECT_SHELL: &str = "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; do if [ -x \"$s\" ]; then exec \"$s\" \"$@\"; fi; done; echo 'ERROR: no shell found in the image (looked for bash and sh in /usr/local/bin, /usr/bin, /bin, /busybox)' >&2; exit 127";

/// Build a script for `commands`, run in `workdir`.
/// `chown_to`: give files created in the build folder back to this `uid:gid` on exit (so a
/// container running as root leaves nothing the user cannot delete).
pub fn build(commands: &[String], workdir: &str, chown_to: Option<(&str, &[&str])>) -> String {
    let mut s = String::new();
    // One stream: stdout and stderr reach the log in the order they were written (the Engine
    // API delivers two pipes, whose relative order is otherwise lost).
    s.push_str("exec 2>&1\n");
    // pipefail where the shell has it (bash, busybox ash); dash lacks it. `command` keeps a
    // special builtin's error from exiting the shell, so no subshell is forked to probe for it
    // (a fork here delayed every job's first command by a millisecond or more).
    s.push_str("command set -o pipefail 2>/dev/null || true\n");
    s.push_str("set -e\n");
    if let Some((owner, dirs)) = chown_to {
        let dirs: Vec<String> = dirs.iter().map(|d| quote(d)).collect();
        s.push_str(&format!(
            "trap 'chown -R {} {} 2>/dev/null || true' EXIT\n",
            quote(owner),
            dirs.join(" ")
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

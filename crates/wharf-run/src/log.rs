//! Job logs: every byte goes through the job's [`Masker`] first, then to the console (coloured on
//! a terminal, plain when piped) and to `.wharf/logs/<job>.log` (always plain).

use crate::mask::Masker;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

const BOLD_CYAN: &str = "\x1b[36;1m";
const BOLD_GREEN: &str = "\x1b[32;1m";
const BOLD_RED: &str = "\x1b[31;1m";
const BOLD_YELLOW: &str = "\x1b[0;33m";
const RESET: &str = "\x1b[0;m";

/// The terminal (or pipe) all jobs write to.
pub struct Console {
    pub color: bool,
    /// GitLab's collapsible sections (`section_start:<time>:<name>`...) around each section:
    /// a job log GitLab shows (`wharf runner`).
    sections: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Console {
    pub fn new(color: bool, out: Box<dyn Write + Send>) -> Arc<Self> {
        Arc::new(Self {
            color,
            sections: false,
            out: Mutex::new(out),
        })
    }

    /// A job's trace for GitLab: coloured, with GitLab's section markers, as gitlab-runner
    /// writes it.
    pub fn gitlab_trace(out: Box<dyn Write + Send>) -> Arc<Self> {
        Arc::new(Self {
            color: true,
            sections: true,
            out: Mutex::new(out),
        })
    }

    pub fn stdout(color: bool) -> Arc<Self> {
        Self::new(color, Box::new(io::stdout()))
    }

    pub fn write(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stdout (e.g. `| head`) must not abort the pipeline or leave containers.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    pub fn line(&self, text: &str) {
        self.write(format!("{text}\n").as_bytes());
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Level {
    Section,
    Info,
    Success,
    Warning,
    Error,
}

pub struct JobLog {
    console: Arc<Console>,
    file: File,
    path: std::path::PathBuf,
    /// Bytes the file could not take since its last good write (a full disk), and why.
    unwritten: Option<(u64, String)>,
    masker: Masker,
    console_strip: AnsiStripper,
    file_strip: AnsiStripper,
    /// `job-name | ` before every console line when several jobs run at once (the log file
    /// stays unprefixed).
    prefix: Option<String>,
    /// Console bytes of an unfinished line, held until its newline so that jobs running at
    /// once interleave whole lines only.
    pending: Vec<u8>,
    /// The GitLab section open on the console (see [`Console::gitlab_trace`]).
    open_section: Option<String>,
}

/// The longest unfinished console line held back for its newline (prefixed consoles only);
/// longer lines are cut.
const MAX_PENDING_LINE: usize = 64 * 1024;

/// Colours for job-name prefixes, picked by the name so a job keeps its colour.
const PREFIX_COLOURS: [&str; 6] = [
    "\x1b[34m", "\x1b[35m", "\x1b[36m", "\x1b[32m", "\x1b[33m", "\x1b[94m",
];

impl JobLog {
    pub fn create(console: Arc<Console>, path: &Path, masker: Masker) -> io::Result<Self> {
        Self::open(console, path, masker, false)
    }

    /// Like [`JobLog::create`], but keeps what the file holds (a retried job's earlier attempts).
    pub fn append(console: Arc<Console>, path: &Path, masker: Masker) -> io::Result<Self> {
        Self::open(console, path, masker, true)
    }

    fn open(console: Arc<Console>, path: &Path, masker: Masker, append: bool) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = if append {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
        } else {
            File::create(path)?
        };
        Ok(Self {
            console,
            file,
            path: path.to_path_buf(),
            unwritten: None,
            masker,
            console_strip: AnsiStripper::default(),
            file_strip: AnsiStripper::default(),
            prefix: None,
            pending: Vec::new(),
            open_section: None,
        })
    }

    /// Prefix console lines with this (already padded) job name.
    pub fn with_prefix(mut self, prefix: Option<String>) -> Self {
        self.prefix = prefix.map(|p| {
            if self.console.color {
                let pick = p.bytes().map(usize::from).sum::<usize>() % PREFIX_COLOURS.len();
                format!("{}{p}{RESET} | ", PREFIX_COLOURS[pick])
            } else {
                format!("{p} | ")
            }
        });
        self
    }

    /// Write to the console, line by line with the prefix when there is one.
    fn write_console(&mut self, bytes: &[u8]) {
        let Some(prefix) = &self.prefix else {
            self.console.write(bytes);
            return;
        };
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > MAX_PENDING_LINE && !self.pending.contains(&b'\n') {
            // One endless line (100 MB without a newline): cut it rather than hold it all.
            self.pending.push(b'\n');
        }
        let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
        let mut out = Vec::with_capacity(complete.len() + prefix.len() * 4);
        for line in complete.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
        self.console.write(&out);
    }

    /// Console output of an unfinished line is written out (end of a process's output).
    fn flush_console_line(&mut self) {
        if self.prefix.is_some() && !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.write_console(&[]);
        }
    }

    /// Register a secret learnt after the log was opened (e.g. from a credential helper).
    pub fn add_secret(&mut self, secret: &str) {
        self.masker.add(secret);
    }

    /// One line written by wharf itself.
    pub fn message(&mut self, level: Level, text: &str) {
        // wharf's own messages may quote a registry or an archive: no terminal commands in them
        // (the job's own output, in `output`, is the job's to color).
        let masked = self.masker.mask_str(text);
        let text = wharf_oci::printable(&masked);
        let (color, prefix) = match level {
            Level::Section => (BOLD_CYAN, ""),
            Level::Info => ("", ""),
            Level::Success => (BOLD_GREEN, ""),
            Level::Warning => (BOLD_YELLOW, "WARNING: "),
            Level::Error => (BOLD_RED, "ERROR: "),
        };
        for (i, line) in text.lines().enumerate() {
            // Only the first line carries the prefix; continuation lines (fix hints) stay aligned.
            let prefix = if i == 0 { prefix } else { "" };
            let plain = format!("{prefix}{line}\n");
            if self.console.color && !color.is_empty() {
                self.write_console(format!("{color}{prefix}{line}{RESET}\n").as_bytes());
            } else {
                self.write_console(plain.as_bytes());
            }
            self.write_file(plain.as_bytes());
        }
    }

    pub fn section(&mut self, text: &str) {
        if self.console.sections {
            self.close_section();
            let name = section_name(&self.masker.mask_str(text));
            self.write_console(section_marker("start", &name).as_bytes());
            self.open_section = Some(name);
        }
        self.message(Level::Section, text);
    }

    fn close_section(&mut self) {
        if let Some(name) = self.open_section.take() {
            self.write_console(section_marker("end", &name).as_bytes());
        }
    }
    pub fn info(&mut self, text: &str) {
        self.message(Level::Info, text);
    }
    pub fn warn(&mut self, text: &str) {
        self.message(Level::Warning, text);
    }
    pub fn error(&mut self, text: &str) {
        self.message(Level::Error, text);
    }

    /// Raw output of the job's processes.
    pub fn output(&mut self, bytes: &[u8]) {
        let masked = self.masker.push(bytes);
        self.emit(&masked);
    }

    /// End of a process's output: release what the masker held back.
    pub fn flush_output(&mut self) {
        let rest = self.masker.finish();
        self.emit(&rest);
        self.flush_console_line();
    }

    /// The console prefix is in use (several jobs run at once): no progress bars then.
    pub fn is_prefixed(&self) -> bool {
        self.prefix.is_some()
    }

    fn emit(&mut self, masked: &[u8]) {
        if masked.is_empty() {
            return;
        }
        if self.console.color {
            self.write_console(masked);
        } else {
            let plain = self.console_strip.strip(masked);
            self.write_console(&plain);
        }
        let plain = self.file_strip.strip(masked);
        self.write_file(&plain);
    }

    /// A full disk must not kill the job, and must not cut its log file short in silence: the
    /// console says the file is incomplete, and once the file takes bytes again it first says
    /// how much is missing there (the console still has every byte).
    fn write_file(&mut self, bytes: &[u8]) {
        if let Some((lost, why)) = &self.unwritten {
            let note = format!(
                "\n[wharf: up to {lost} bytes of this job's output could not be written to this \
                 file ({why}); the console had them]\n"
            );
            if self.file.write_all(note.as_bytes()).is_ok() {
                self.unwritten = None;
            }
        }
        if self.unwritten.is_none() {
            let Err(e) = self.file.write_all(bytes) else {
                return;
            };
            let warning = format!(
                "WARNING: the job log {} is incomplete from here: {e}; this console has the \
                 whole output\n",
                self.path.display()
            );
            self.write_console(warning.as_bytes());
            self.unwritten = Some((0, e.to_string()));
        }
        if let Some((lost, _)) = &mut self.unwritten {
            *lost += bytes.len() as u64;
        }
    }
}

impl Drop for JobLog {
    fn drop(&mut self) {
        self.close_section();
    }
}

/// GitLab's section marker: `kind` is `start` or `end`; `name` as [`section_name`] makes it.
pub fn section_marker(kind: &str, name: &str) -> String {
    format!("section_{kind}:{}:{name}\r\x1b[0K", unix_time())
}

/// GitLab's section names: letters, digits, `_`, `.` and `-` (gitlab-runner's `step_script`...).
pub fn section_name(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_matches('_').to_string()
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Removes ANSI escape sequences from a byte stream, also when one is split across chunks.
#[derive(Default, Clone, Copy)]
struct AnsiStripper {
    state: StripState,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum StripState {
    #[default]
    Text,
    Escape,
    Csi,
    Osc,
}

impl AnsiStripper {
    fn strip(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            self.state = match (self.state, b) {
                (StripState::Text, 0x1b) => StripState::Escape,
                (StripState::Text, _) => {
                    out.push(b);
                    StripState::Text
                }
                (StripState::Escape, b'[') => StripState::Csi,
                (StripState::Escape, b']') => StripState::Osc,
                (StripState::Escape, _) => StripState::Text,
                (StripState::Csi, 0x40..=0x7e) => StripState::Text,
                (StripState::Csi, _) => StripState::Csi,
                (StripState::Osc, 0x07) => StripState::Text,
                (StripState::Osc, 0x1b) => StripState::Escape,
                (StripState::Osc, _) => StripState::Osc,
            };
        }
        out
    }
}

/// Console-only colouring helper for summary lines written outside a job.
pub fn paint(color: bool, level: Level, text: &str) -> String {
    let c = match level {
        Level::Section => BOLD_CYAN,
        Level::Info => "",
        Level::Success => BOLD_GREEN,
        Level::Warning => BOLD_YELLOW,
        Level::Error => BOLD_RED,
    };
    if color && !c.is_empty() {
        format!("{c}{text}{RESET}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_split_escape_sequences() {
        let mut s = AnsiStripper::default();
        let mut out = s.strip(b"a\x1b[3");
        out.extend(s.strip(b"2;1mb\x1b[0;m c"));
        assert_eq!(out, b"ab c");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prefixed_console_lines_and_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Shared::default();
        let console = Console::new(false, Box::new(sink.clone()));
        let path = dir.path().join("logs/j.log");
        let mut log = JobLog::create(console, &path, Masker::new(Vec::<String>::new()))
            .unwrap()
            .with_prefix(Some("build ".into()));
        log.info("Running");
        log.output(b"one\ntw");
        assert!(
            !String::from_utf8(sink.0.lock().unwrap().clone())
                .unwrap()
                .contains("tw")
        );
        log.output(b"o\nthree");
        log.flush_output();
        drop(log);
        let console_text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            console_text,
            "build  | Running\nbuild  | one\nbuild  | two\nbuild  | three\n"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Running\none\ntwo\nthree"
        );
    }

    /// Regression: a job that filled the disk lost the rest of its log file in silence, even
    /// after it freed the space again. Now the console says so at once, and the file says what
    /// is missing where it is missing, then goes on.
    #[test]
    #[ignore = "needs root (mounts a tmpfs): run by scripts/test-all.sh"]
    fn a_full_disk_leaves_a_note_in_the_log_file_and_a_warning_on_the_console() {
        let dir = wharf_testkit::Tmpfs::mount("size=64k").expect("a tmpfs");
        let sink = Shared::default();
        let console = Console::new(false, Box::new(sink.clone()));
        let path = dir.path().join("j.log");
        let mut log = JobLog::create(console, &path, Masker::new(Vec::<String>::new())).unwrap();
        log.output(b"before\n");
        let filler = dir.fill().expect("fill the disk");
        // More than the page the file already has (tmpfs fills a page it holds).
        let padding = "x".repeat(200);
        for i in 0..100 {
            log.output(format!("lost line {i} {padding}\n").as_bytes());
        }
        std::fs::remove_file(&filler).unwrap();
        log.output(b"after\n");
        drop(log);
        let console = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            console.matches("is incomplete from here").count(),
            1,
            "{console}"
        );
        assert!(console.contains("lost line 99"), "{console}");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.starts_with("before\n"), "{file}");
        assert!(
            file.contains("bytes of this job's output could not be written"),
            "{file}"
        );
        assert!(file.ends_with("after\n"), "{file}");
    }

    /// wharf's own messages can quote a registry's or an archive's bytes (an image pull's
    /// error): their terminal commands are escaped, on the console and in the file.
    #[test]
    fn messages_escape_terminal_commands() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Shared::default();
        let console = Console::new(false, Box::new(sink.clone()));
        let path = dir.path().join("j.log");
        let mut log = JobLog::create(console, &path, Masker::new(Vec::<String>::new())).unwrap();
        log.error("pull failed: header \u{1b}]0;pwned\u{7}");
        drop(log);
        let console = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let file = std::fs::read_to_string(&path).unwrap();
        for text in [&console, &file] {
            assert!(text.contains("header \\u{1b}]0;pwned\\u{7}"), "{text:?}");
        }
    }

    #[test]
    fn an_endless_line_is_cut_not_held_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Shared::default();
        let console = Console::new(false, Box::new(sink.clone()));
        let mut log = JobLog::create(
            console,
            &dir.path().join("j.log"),
            Masker::new(Vec::<String>::new()),
        )
        .unwrap()
        .with_prefix(Some("noisy".into()));
        let chunk = vec![b'y'; 16 * 1024];
        for _ in 0..640 {
            log.output(&chunk);
            assert!(log.pending.len() <= MAX_PENDING_LINE + chunk.len());
        }
        log.flush_output();
        let console_text = sink.0.lock().unwrap().len();
        assert!(console_text >= 640 * chunk.len(), "{console_text}");
    }

    #[test]
    fn a_gitlab_trace_has_gitlabs_section_markers_and_the_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Shared::default();
        let path = dir.path().join("j.log");
        let mut log = JobLog::create(
            Console::gitlab_trace(Box::new(sink.clone())),
            &path,
            Masker::new(Vec::<String>::new()),
        )
        .unwrap();
        log.section("Executing \"step_script\" stage");
        log.output(b"out\n");
        log.section("Cleaning up");
        drop(log);
        let trace = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let marker = regex::Regex::new(r"section_(start|end):\d+:([a-z_]+)\r\x1b\[0K").unwrap();
        let markers: Vec<String> = marker
            .captures_iter(&trace)
            .map(|c| format!("{} {}", &c[1], &c[2]))
            .collect();
        assert_eq!(
            markers,
            [
                "start executing_step_script_stage",
                "end executing_step_script_stage",
                "start cleaning_up",
                "end cleaning_up"
            ],
            "{trace:?}"
        );
        assert!(!std::fs::read_to_string(&path).unwrap().contains("section_"));
    }

    #[test]
    fn masks_console_and_file_and_strips_colour_when_piped() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Shared::default();
        let console = Console::new(false, Box::new(sink.clone()));
        let path = dir.path().join("logs/j.log");
        let mut log = JobLog::create(console, &path, Masker::new(["topsecret"])).unwrap();
        log.warn("value topsecret here");
        log.output(b"\x1b[32;1m$ echo topse");
        log.output(b"cret\x1b[0;m\n");
        log.flush_output();
        drop(log);
        let console_text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let file_text = std::fs::read_to_string(&path).unwrap();
        for text in [&console_text, &file_text] {
            assert!(!text.contains("topsecret"), "{text}");
            assert!(text.contains("WARNING: value [MASKED] here"), "{text}");
            assert!(text.contains("$ echo [MASKED]\n"), "{text}");
            assert!(!text.contains('\x1b'), "{text:?}");
        }
    }
}

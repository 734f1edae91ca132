//! A job's artifacts: which jobs' artifacts it takes (GitLab's `dependencies` and `needs`),
//! publishing its own, and its `artifacts: reports: dotenv` variables for later jobs.

use crate::failure::JobFailure;
use crate::files::{self, JobDirs, slug};
use crate::log::JobLog;
use crate::options::DotenvLimits;
use crate::transfer::{Collected, Patterns, collect};
use crate::vars::VarSet;
use std::path::{Path, PathBuf};
use wharf_ci::{Job, Pipeline};

/// Where the artifacts of the job named `job_name` are published.
pub(crate) fn artifacts_dir(wharf_dir: &Path, job_name: &str) -> PathBuf {
    wharf_dir.join("artifacts").join(slug(job_name))
}

/// GitLab: artifacts of every job in earlier stages, or only those named in `dependencies`
/// (or `needs`).
pub(crate) fn dependency_jobs<'p>(pipeline: &'p Pipeline, job: &Job) -> Vec<&'p Job> {
    let stage_pos = |s: &str| {
        pipeline
            .stages
            .iter()
            .position(|x| x == s)
            .unwrap_or(usize::MAX)
    };
    let mine = stage_pos(&job.stage);
    // `dependencies` wins over `needs`; a need with `artifacts: false` brings none.
    let named: Option<Vec<&str>> = match (&job.dependencies, &job.needs) {
        (Some(deps), _) => Some(deps.iter().map(String::as_str).collect()),
        (None, Some(needs)) => Some(
            needs
                .iter()
                .filter(|n| n.artifacts)
                .map(|n| n.job.as_str())
                .collect(),
        ),
        (None, None) => None,
    };
    pipeline
        .jobs
        .iter()
        .filter(|d| match &named {
            Some(names) => names.contains(&d.name.as_str()),
            None => stage_pos(&d.stage) < mine,
        })
        .collect()
}

/// Publish the job's `artifacts:` (as `when:` asks against its outcome `ok`) under
/// `.wharf/artifacts/<job>/`, with their metadata. `project_dir_in_job` is `CI_PROJECT_DIR` as
/// the job saw it (absolute artifact paths under it are taken as relative).
pub(crate) fn upload(
    job: &Job,
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    project_dir_in_job: &str,
    ok: bool,
    log: &mut JobLog,
) -> Result<(), JobFailure> {
    let Some(art) = &job.artifacts else {
        return Ok(());
    };
    if !crate::cache::when_matches(art.when, ok) {
        return Ok(());
    }
    log.section(if ok {
        "Uploading artifacts for successful job"
    } else {
        "Uploading artifacts for failed job"
    });
    let mut paths = art.paths.clone();
    // `reports:` other than dotenv are kept as files with the artifacts.
    paths.extend(art.reports_other.iter().cloned());
    let patterns = Patterns {
        paths: &paths,
        exclude: &art.exclude,
        untracked: art.untracked,
    };
    let Collected {
        root: build,
        entries,
    } = collect(patterns, vars, dirs, project_dir_in_job, log)?;
    let reports: Vec<String> = art
        .reports_other
        .iter()
        .map(|p| files::relative_to_project(&vars.expand(p), Some(project_dir_in_job)))
        .collect();
    let dest = artifacts_dir(dirs.wharf_dir, &job.name);
    let meta_root = dirs.wharf_dir.join("artifacts");
    if entries.is_empty() {
        log.error("No files to upload");
        let _ = files::remove_tree(&dest);
        let _ = std::fs::remove_file(meta_root.join(format!("{}.json", slug(&job.name))));
        return Ok(());
    }
    match files::publish(&build, &entries, &dest) {
        Ok(skipped) => {
            crate::cache::warn_skipped(&skipped, log);
            for e in &entries {
                log.info(&format!(
                    "{}: found, saved to {}",
                    e.display(),
                    dirs.relative(&dest.join(e))
                ));
            }
            // `name` and `expire_in` are recorded, not acted on (wharf never expires artifacts).
            let meta = files::ArtifactsMeta {
                job: job.name.clone(),
                name: art
                    .name
                    .as_ref()
                    .map(|n| vars.expand(n))
                    .unwrap_or_else(|| "artifacts".to_string()),
                expire_in: art.expire_in.clone(),
                paths: entries.iter().map(|e| e.display().to_string()).collect(),
                reports,
                created: files::rfc3339_utc(std::time::SystemTime::now()),
            };
            if let Err(e) = files::write_artifacts_meta(&meta_root, &slug(&job.name), &meta) {
                log.warn(&format!("artifacts metadata not saved: {e}"));
            }
            Ok(())
        }
        Err(e) => Err(JobFailure::system(format!("artifacts not saved: {e}"))),
    }
}

/// Where a job's `artifacts: reports: dotenv` variables are kept for later jobs.
pub(crate) fn dotenv_path(wharf_dir: &Path, job_name: &str) -> PathBuf {
    wharf_dir
        .join("dotenv")
        .join(format!("{}.json", slug(job_name)))
}

/// Read the job's dotenv reports from its build folder and keep their variables for later jobs.
/// The files are read confined to the build folder (an absolute path, `..` or a symbolic link is
/// refused), within GitLab's limits; names follow GitLab's grammar. Any of that wrong: nothing is
/// kept and the job fails, as GitLab refuses such an artifact.
pub(crate) fn save_dotenv_reports(
    job: &Job,
    dirs: &JobDirs<'_>,
    limits: DotenvLimits,
    log: &mut JobLog,
) -> Result<(), JobFailure> {
    let Some(art) = &job.artifacts else {
        return Ok(());
    };
    if art.reports_dotenv.is_empty() {
        return Ok(());
    }
    let dest = dotenv_path(dirs.wharf_dir, &job.name);
    let vars = match read_dotenv_reports(dirs.build_dir, &art.reports_dotenv, limits, log) {
        Ok(vars) => vars,
        Err(e) => {
            // Later jobs must not see a previous run's variables instead.
            let _ = std::fs::remove_file(&dest);
            return Err(JobFailure::configuration(format!(
                "artifacts: reports: dotenv ({}): {e}",
                art.span
            )));
        }
    };
    let written = dest
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|()| {
            let json = serde_json::to_string(&vars).map_err(std::io::Error::other)?;
            write_private(&dest, &json)
        });
    match written {
        Ok(()) => log.info(&format!(
            "Saved {} dotenv report variables for later jobs",
            vars.len()
        )),
        Err(e) => log.warn(&format!("dotenv report not saved: {e}")),
    }
    Ok(())
}

/// The variables of the dotenv `files` in `build_dir`, later ones winning (see
/// [`save_dotenv_reports`] for the rules).
fn read_dotenv_reports(
    build_dir: &Path,
    files: &[String],
    limits: DotenvLimits,
    log: &mut JobLog,
) -> Result<Vec<(String, String)>, String> {
    use std::io::Read as _;
    let build = files::job_tree(build_dir).map_err(|e| e.to_string())?;
    let mut total: u64 = 0;
    let mut vars: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for file in files {
        let opened = match build.open_read(file) {
            Ok(f) => f,
            // As GitLab: a report the job did not write is a warning, not a failure.
            Err(e) if e.is_not_found() => {
                log.warn(&format!(
                    "artifacts: reports: dotenv: {file}: no matching files"
                ));
                continue;
            }
            Err(wharf_fs::Error::WrongKind { found, .. }) => {
                return Err(format!(
                    "{file} is {found}: a dotenv report must be a regular file inside the project folder"
                ));
            }
            Err(other) => return Err(other.to_string()),
        };
        // Never read more than the limit, whatever the file's size claims.
        let mut bytes = Vec::new();
        opened
            .take(limits.max_bytes)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {file}: {e}"))?;
        total += bytes.len() as u64;
        if total >= limits.max_bytes {
            return Err(format!(
                "the dotenv reports reach {} bytes: they must hold less (GitLab's default limit: less than 5 KiB)\n  fix: write fewer or shorter variables (pass the rest in an artifact file), or raise the limit with `wharf run --max-dotenv-size`",
                limits.max_bytes
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        for (name, value) in crate::vars::parse_dotenv(file, &text)? {
            if !crate::vars::is_variable_name(&name) {
                return Err(format!(
                    "{file}: `{}` is not a valid variable name: letters, digits and `_` only, at most {} characters",
                    name.chars().take(64).collect::<String>(),
                    crate::vars::MAX_VARIABLE_NAME_LEN
                ));
            }
            vars.insert(name, value);
        }
    }
    if vars.len() > limits.max_variables {
        return Err(format!(
            "{} variables: at most {} are taken from a job's dotenv reports (GitLab's default: 20)\n  fix: write fewer variables (pass the rest in an artifact file), or raise the limit with `wharf run --max-dotenv-variables`",
            vars.len(),
            limits.max_variables
        ));
    }
    Ok(vars.into_iter().collect())
}

/// The dotenv report variables of the jobs whose artifacts `job` takes, later jobs winning.
pub(crate) fn dotenv_for(
    wharf_dir: &Path,
    pipeline: &Pipeline,
    job: &Job,
) -> Vec<(String, String)> {
    dependency_jobs(pipeline, job)
        .into_iter()
        .filter_map(|d| std::fs::read_to_string(dotenv_path(wharf_dir, &d.name)).ok())
        .filter_map(|text| serde_json::from_str::<Vec<(String, String)>>(&text).ok())
        .flatten()
        .collect()
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Console;
    use crate::mask::Masker;

    fn dotenv(build: &Path, files: &[&str]) -> Result<Vec<(String, String)>, String> {
        dotenv_within(build, files, DotenvLimits::default())
    }

    fn dotenv_within(
        build: &Path,
        files: &[&str],
        limits: DotenvLimits,
    ) -> Result<Vec<(String, String)>, String> {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let console = Console::new(false, Box::new(std::io::sink()));
        let mut log = JobLog::create(
            console,
            &build.join("job.log"),
            Masker::new(Vec::<String>::new()),
        )
        .unwrap();
        read_dotenv_reports(build, &files, limits, &mut log)
    }

    #[test]
    fn dotenv_reports_are_confined_limited_and_named_as_gitlab_wants() {
        let outside = tempfile::tempdir().unwrap();
        let host_file = outside.path().join("hostname");
        std::fs::write(&host_file, "LEAK=host\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        let build = d.path();
        std::fs::write(build.join("ok.env"), "A=1\nB=two\n").unwrap();
        std::fs::write(build.join("later.env"), "A=3\n").unwrap();
        assert_eq!(
            dotenv(build, &["ok.env", "missing.env", "later.env"]).unwrap(),
            [("A".into(), "3".into()), ("B".into(), "two".into())]
        );
        let warned = std::fs::read_to_string(build.join("job.log")).unwrap();
        assert!(
            warned.contains("missing.env: no matching files"),
            "{warned}"
        );

        std::os::unix::fs::symlink(&host_file, build.join("link.env")).unwrap();
        std::os::unix::fs::symlink(outside.path(), build.join("dir")).unwrap();
        let absolute = host_file.to_str().unwrap().to_string();
        let dotdot = format!("{}{}", "../".repeat(30), absolute.trim_start_matches('/'));
        for bad in [
            "link.env",
            "dir/hostname",
            absolute.as_str(),
            dotdot.as_str(),
        ] {
            let e = dotenv(build, &[bad]).unwrap_err();
            assert!(!e.contains("LEAK"), "{e}");
            assert!(
                e.contains("symbolic link") || e.contains("outside") || e.contains("absolute"),
                "{bad}: {e}"
            );
        }

        let many: String = (0..21).map(|i| format!("V{i}={i}\n")).collect();
        std::fs::write(build.join("many.env"), many).unwrap();
        assert!(
            dotenv(build, &["many.env"])
                .unwrap_err()
                .contains("at most 20")
        );
        let twenty: String = (0..20).map(|i| format!("V{i}={i}\n")).collect();
        std::fs::write(build.join("twenty.env"), twenty).unwrap();
        assert_eq!(dotenv(build, &["twenty.env"]).unwrap().len(), 20);

        let big = format!("BIG={}\n", "x".repeat(5200));
        std::fs::write(build.join("big.env"), big).unwrap();
        assert!(
            dotenv(build, &["big.env"])
                .unwrap_err()
                .contains("less than 5 KiB")
        );

        std::fs::write(build.join("name.env"), "BAD.NAME=1\n").unwrap();
        assert!(
            dotenv(build, &["name.env"])
                .unwrap_err()
                .contains("`BAD.NAME` is not a valid variable name")
        );
    }

    #[test]
    fn dotenv_limits_can_be_raised_and_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path();
        let many: String = (0..21).map(|i| format!("V{i}={i}\n")).collect();
        std::fs::write(build.join("many.env"), many).unwrap();
        let raised = DotenvLimits {
            max_bytes: 64 * 1024,
            max_variables: 30,
        };
        assert_eq!(
            dotenv_within(build, &["many.env"], raised).unwrap().len(),
            21
        );
        let lowered = DotenvLimits {
            max_bytes: 10,
            max_variables: 20,
        };
        let e = dotenv_within(build, &["many.env"], lowered).unwrap_err();
        assert!(e.contains("--max-dotenv-size"), "{e}");
        let few = DotenvLimits {
            max_bytes: 5 * 1024,
            max_variables: 2,
        };
        let e = dotenv_within(build, &["many.env"], few).unwrap_err();
        assert!(
            e.contains("at most 2 ") && e.contains("--max-dotenv-variables"),
            "{e}"
        );
    }
}

//! GitLab's predefined variables, built in this one module: the pipeline's (`CI_COMMIT_*`,
//! `CI_PIPELINE_*`...), the job's that rules may test (`CI_JOB_NAME`, `CI_NODE_*`,
//! `CI_ENVIRONMENT_*`) and the job's where it runs (`CI_PROJECT_DIR`, `CI_JOB_ID`...).

use std::path::Path;
use wharf_ci::Job;

pub const CI: &str = "CI";
pub const GITLAB_CI: &str = "GITLAB_CI";
pub const CI_SERVER: &str = "CI_SERVER";
pub const CI_PIPELINE_SOURCE: &str = "CI_PIPELINE_SOURCE";
pub const CI_PROJECT_NAME: &str = "CI_PROJECT_NAME";
pub const CI_PROJECT_PATH: &str = "CI_PROJECT_PATH";
pub const CI_PIPELINE_ID: &str = "CI_PIPELINE_ID";
pub const CI_PIPELINE_IID: &str = "CI_PIPELINE_IID";
pub const CI_RUNNER_EXECUTABLE_ARCH: &str = "CI_RUNNER_EXECUTABLE_ARCH";
pub const CI_COMMIT_SHA: &str = "CI_COMMIT_SHA";
pub const CI_COMMIT_SHORT_SHA: &str = "CI_COMMIT_SHORT_SHA";
pub const CI_COMMIT_REF_NAME: &str = "CI_COMMIT_REF_NAME";
pub const CI_COMMIT_REF_SLUG: &str = "CI_COMMIT_REF_SLUG";
pub const CI_COMMIT_BRANCH: &str = "CI_COMMIT_BRANCH";
pub const CI_COMMIT_TAG: &str = "CI_COMMIT_TAG";
pub const CI_DEFAULT_BRANCH: &str = "CI_DEFAULT_BRANCH";
pub const CI_COMMIT_MESSAGE: &str = "CI_COMMIT_MESSAGE";
pub const CI_COMMIT_TITLE: &str = "CI_COMMIT_TITLE";
pub const CI_JOB_NAME: &str = "CI_JOB_NAME";
pub const CI_JOB_NAME_SLUG: &str = "CI_JOB_NAME_SLUG";
pub const CI_JOB_STAGE: &str = "CI_JOB_STAGE";
pub const CI_NODE_INDEX: &str = "CI_NODE_INDEX";
pub const CI_NODE_TOTAL: &str = "CI_NODE_TOTAL";
pub const CI_ENVIRONMENT_NAME: &str = "CI_ENVIRONMENT_NAME";
pub const CI_ENVIRONMENT_SLUG: &str = "CI_ENVIRONMENT_SLUG";
pub const CI_ENVIRONMENT_URL: &str = "CI_ENVIRONMENT_URL";
pub const CI_BUILDS_DIR: &str = "CI_BUILDS_DIR";
pub const CI_PROJECT_DIR: &str = "CI_PROJECT_DIR";
pub const CI_JOB_ID: &str = "CI_JOB_ID";
pub const CI_JOB_IMAGE: &str = "CI_JOB_IMAGE";
pub const CI_JOB_STATUS: &str = "CI_JOB_STATUS";

/// The job-level predefined variables rules can test (`$CI_JOB_NAME`...).
pub fn job(job: &Job) -> Vec<(String, String)> {
    let mut v = vec![
        (CI_JOB_NAME.to_string(), job.name.clone()),
        (
            "CI_JOB_NAME_SLUG".to_string(),
            crate::files::slug(&job.name).to_lowercase(),
        ),
        (CI_JOB_STAGE.to_string(), job.stage.clone()),
    ];
    if let Some(p) = &job.parallel {
        v.push((CI_NODE_INDEX.into(), p.index.to_string()));
        v.push((CI_NODE_TOTAL.into(), p.total.to_string()));
    } else {
        // GitLab sets CI_NODE_TOTAL for every job (1 without `parallel:`); only CI_NODE_INDEX is
        // absent.
        v.push((CI_NODE_TOTAL.into(), "1".into()));
    }
    if let Some(name) = &job.environment {
        v.push((CI_ENVIRONMENT_NAME.into(), name.clone()));
        v.push((CI_ENVIRONMENT_SLUG.into(), environment_slug(name)));
    }
    if let Some(url) = &job.environment_url {
        v.push((CI_ENVIRONMENT_URL.into(), url.clone()));
    }
    v
}

/// `CI_ENVIRONMENT_SLUG` as GitLab computes it (`Gitlab::Slug::Environment`): lowercase
/// letters, digits and `-`, starting with a letter, at most 24 bytes; when the slug differs from
/// the name (or is too long) it is cut to 17 bytes and given a 6-character suffix derived from
/// the SHA-256 of the name, so distinct names keep distinct slugs.
pub fn environment_slug(name: &str) -> String {
    let mut slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !slug.starts_with(|c: char| c.is_ascii_lowercase()) {
        slug.insert_str(0, "env-");
    }
    let mut squeezed = String::with_capacity(slug.len());
    for c in slug.chars() {
        if !(c == '-' && squeezed.ends_with('-')) {
            squeezed.push(c);
        }
    }
    if squeezed.len() <= 24 && squeezed == name {
        return squeezed.trim_end_matches('-').to_string();
    }
    let mut short: String = squeezed.chars().take(17).collect();
    if !short.ends_with('-') {
        short.push('-');
    }
    short.push_str(&slug_suffix(name));
    short
}

/// Ruby's `Digest::SHA2.hexdigest(name).to_i(16).to_s(36).last(6)`: the last six base-36
/// digits of the digest read as one big number, i.e. the digest modulo 36^6.
fn slug_suffix(name: &str) -> String {
    use sha2::Digest as _;
    const MODULUS: u64 = 36u64.pow(6);
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut rest = digest
        .iter()
        .fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % MODULUS);
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(rest % 36) as usize];
        rest /= 36;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// The pipeline-level predefined variables (the job-level ones are added per job).
pub fn pipeline(
    project_name: &str,
    pipeline_id: u64,
    git: &crate::git::GitInfo,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        (CI, "true"),
        (GITLAB_CI, "true"),
        (CI_SERVER, "yes"),
        (CI_PIPELINE_SOURCE, "push"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.extend([
        (CI_PROJECT_NAME.to_string(), project_name.to_string()),
        (CI_PROJECT_PATH.to_string(), project_name.to_string()),
        (CI_PIPELINE_ID.to_string(), pipeline_id.to_string()),
        (CI_PIPELINE_IID.to_string(), pipeline_id.to_string()),
        (
            "CI_RUNNER_EXECUTABLE_ARCH".to_string(),
            format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        ),
    ]);
    if let Some(sha) = &git.sha {
        v.push((CI_COMMIT_SHA.into(), sha.clone()));
        v.push((CI_COMMIT_SHORT_SHA.into(), sha.chars().take(8).collect()));
    }
    if let Some(name) = git.ref_name() {
        v.push((CI_COMMIT_REF_NAME.into(), name.to_string()));
        v.push((CI_COMMIT_REF_SLUG.into(), ref_slug(name)));
    }
    if let Some(branch) = &git.branch {
        v.push((CI_COMMIT_BRANCH.into(), branch.clone()));
    }
    if let Some(tag) = &git.tag {
        v.push((CI_COMMIT_TAG.into(), tag.clone()));
    }
    if let Some(default) = &git.default_branch {
        v.push((CI_DEFAULT_BRANCH.into(), default.clone()));
    }
    if let Some(msg) = &git.commit_message {
        v.push((CI_COMMIT_MESSAGE.into(), msg.clone()));
        v.push((
            "CI_COMMIT_TITLE".into(),
            msg.lines().next().unwrap_or_default().to_string(),
        ));
    }
    v
}

fn ref_slug(s: &str) -> String {
    let lowered: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    lowered.trim_matches('-').to_string()
}

/// The variables that say where and as what a job runs, known only when it starts.
pub(crate) fn job_runtime(
    job: &Job,
    job_id: u64,
    builds_dir: String,
    project_dir_in_job: String,
) -> Vec<(String, String)> {
    let mut v = self::job(job);
    v.extend([
        (CI_BUILDS_DIR.to_string(), builds_dir),
        (CI_PROJECT_DIR.to_string(), project_dir_in_job),
        (CI_JOB_ID.to_string(), job_id.to_string()),
    ]);
    if let Some(image) = &job.image {
        v.push((CI_JOB_IMAGE.into(), image.name.clone()));
    }
    v
}

/// The project's name as wharf uses it: its folder's name.
pub fn project_name(project_dir: &Path) -> String {
    project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into())
}

/// The pipeline-level variables a pipeline's loading may depend on (`include: rules`...), before
/// any pipeline runs (pipeline id 0).
pub fn for_loading(project_dir: &Path) -> Vec<(String, String)> {
    let git = crate::git::GitInfo::read(project_dir);
    pipeline(&project_name(project_dir), 0, &git)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_slug_follows_gitlab() {
        // Expected suffixes computed independently (Python: base-36 of the SHA-256, last 6).
        assert_eq!(environment_slug("production"), "production");
        assert_eq!(environment_slug("review/1-foo"), "review-1-foo-9tdj0u");
        assert_eq!(environment_slug("PRODUCTION"), "production-vl4voz");
        assert_eq!(
            environment_slug("staging-12345678901234567"),
            "staging-123456789-s729ne"
        );
        assert_eq!(
            environment_slug("staging-1234567890123456"),
            "staging-1234567890123456"
        );
    }

    #[test]
    fn every_job_has_node_total_and_only_parallel_ones_a_node_index() {
        struct OneFile;
        impl wharf_ci::Loader for OneFile {
            fn load(&self, _: &str) -> Result<String, std::io::Error> {
                Ok("one:\n  script: [x]\nmany:\n  parallel: 2\n  script: [x]\n".into())
            }
        }
        let pipeline = wharf_ci::load_pipeline(".gitlab-ci.yml", &OneFile)
            .unwrap()
            .pipeline;
        let vars = |name: &str| job(pipeline.jobs.iter().find(|j| j.name == name).unwrap());
        let one = vars("one");
        assert!(one.contains(&(CI_NODE_TOTAL.into(), "1".into())), "{one:?}");
        assert!(!one.iter().any(|(k, _)| k == CI_NODE_INDEX), "{one:?}");
        let many = vars("many 1/2");
        assert!(
            many.contains(&(CI_NODE_TOTAL.into(), "2".into())),
            "{many:?}"
        );
        assert!(
            many.contains(&(CI_NODE_INDEX.into(), "1".into())),
            "{many:?}"
        );
    }
}

//! A job payload as wharf's job type: the same [`wharf_ci::Job`] a `.gitlab-ci.yml` gives, so
//! the job runs through the same phases and executors as under `wharf run`. GitLab already
//! evaluated rules, `extends` and the like: what is left is the scripts, image, services,
//! caches and variables. What wharf does not act on is listed in `unsupported` (the job log
//! says so) instead of being dropped silently.

use super::spec::{CacheSpec, ImageSpec, JobPayload, StepWhen};
use std::time::Duration;
use wharf_ci::{
    Cache, CachePolicy, CacheWhen, FileVariable, Image, Job, PullPolicy, Retry, Service, Span,
    Variable, When,
};

/// Where the job "was written": shown in messages that name a place.
fn payload_span(payload: &JobPayload) -> Span {
    Span {
        file: format!("GitLab job {}", payload.id),
        line: 1,
        column: 1,
        offset: 0,
        len: 0,
    }
}

/// The wharf job of a payload. The script step's timeout (else `runner_info.timeout`) is the
/// job's timeout.
pub fn job_of(payload: &JobPayload) -> Job {
    let span = payload_span(payload);
    let mut unsupported = Vec::new();
    let mut script = Vec::new();
    let mut after_script = Vec::new();
    let mut timeout =
        (payload.runner_info.timeout > 0).then(|| Duration::from_secs(payload.runner_info.timeout));
    for step in &payload.steps {
        match step.name.as_str() {
            "script" => {
                script.extend(step.script.iter().cloned());
                if step.timeout > 0 {
                    timeout = Some(Duration::from_secs(step.timeout));
                }
                if step.when != StepWhen::OnSuccess {
                    unsupported
                        .push((format!("script step `when: {:?}`", step.when), span.clone()));
                }
            }
            // GitLab sends `when: always`: wharf runs after_script after anything but a cancel.
            "after_script" => after_script.extend(step.script.iter().cloned()),
            other => unsupported.push((format!("step `{other}`"), span.clone())),
        }
    }
    // `artifacts` and `dependencies` are the runner's (wharf's `runner_artifacts`): they
    // travel through GitLab, not through `.wharf/artifacts/`.
    Job {
        name: payload.job_info.name.clone(),
        span: span.clone(),
        stage: payload.job_info.stage.clone(),
        image: payload.image.as_ref().map(|i| image_of(i, &span)),
        before_script: Vec::new(),
        script,
        after_script,
        // The payload's variables are the job's whole set: see `variables_of`.
        variables: Vec::new(),
        cache: payload.cache.iter().map(|c| cache_of(c, &span)).collect(),
        artifacts: None,
        when: When::OnSuccess,
        allow_failure: false,
        needs: Some(Vec::new()),
        dependencies: Some(Vec::new()),
        unsupported,
        services: payload
            .services
            .iter()
            .map(|s| service_of(s, &span))
            .collect(),
        rules: Vec::new(),
        only: None,
        except: None,
        allow_failure_exit_codes: Vec::new(),
        start_in: None,
        // GitLab retries by creating a new job.
        retry: Retry::default(),
        timeout,
        interruptible: false,
        tags: Vec::new(),
        coverage: None,
        environment: None,
        environment_url: None,
        resource_group: None,
        parallel: None,
        trigger: None,
        inherit_variables: Some(Vec::new()),
    }
}

/// The payload's variables, given as they are with the highest precedence (GitLab computed
/// them, predefined ones included), plus the job token, masked whatever the payload says.
/// `raw` values keep `$` literal: written as `$$`, which expansion turns back into `$`.
pub fn variables_of(payload: &JobPayload) -> Vec<FileVariable> {
    let mut variables = vec![FileVariable {
        name: "CI_JOB_TOKEN".into(),
        value: payload.token.secret().to_string(),
        masked: true,
        file: false,
    }];
    variables.extend(payload.variables.iter().map(|v| FileVariable {
        name: v.key.clone(),
        value: if v.raw {
            v.value.replace('$', "$$")
        } else {
            v.value.clone()
        },
        masked: v.masked,
        file: v.file,
    }));
    variables
}

fn pull_policies(given: &[String]) -> Vec<PullPolicy> {
    given.iter().filter_map(|p| PullPolicy::parse(p)).collect()
}

fn non_empty(list: &[String]) -> Option<Vec<String>> {
    (!list.is_empty()).then(|| list.to_vec())
}

fn image_of(image: &ImageSpec, span: &Span) -> Image {
    Image {
        name: image.name.clone(),
        entrypoint: non_empty(&image.entrypoint),
        pull_policy: pull_policies(&image.pull_policy),
        docker_user: image.executor_opts.docker.user.clone(),
        docker_platform: image.executor_opts.docker.platform.clone(),
        span: span.clone(),
    }
}

fn service_of(service: &ImageSpec, span: &Span) -> Service {
    Service {
        name: service.name.clone(),
        // GitLab joins several aliases with commas.
        alias: service
            .alias
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        entrypoint: non_empty(&service.entrypoint),
        command: non_empty(&service.command),
        variables: service
            .variables
            .iter()
            .map(|v| Variable {
                name: v.key.clone(),
                value: v.value.clone(),
                expand: !v.raw,
                span: None,
            })
            .collect(),
        pull_policy: pull_policies(&service.pull_policy),
        span: span.clone(),
    }
}

fn cache_of(cache: &CacheSpec, span: &Span) -> Cache {
    Cache {
        key: if cache.key.is_empty() {
            "default".into()
        } else {
            cache.key.clone()
        },
        key_files: Vec::new(),
        fallback_keys: cache.fallback_keys.clone(),
        paths: cache.paths.clone(),
        untracked: cache.untracked,
        policy: match cache.policy.as_deref() {
            Some("pull") => CachePolicy::Pull,
            Some("push") => CachePolicy::Push,
            _ => CachePolicy::PullPush,
        },
        when: match cache.when.as_deref() {
            Some("on_failure") => CacheWhen::OnFailure,
            Some("always") => CacheWhen::Always,
            _ => CacheWhen::OnSuccess,
        },
        span: span.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(json: serde_json::Value) -> JobPayload {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn steps_become_script_and_after_script_with_the_script_steps_timeout() {
        let p = payload(serde_json::json!({
            "id": 3, "token": "t", "job_info": {"name": "build", "stage": "test"},
            "runner_info": {"timeout": 3600},
            "steps": [
                {"name": "script", "script": ["make", "make test"], "timeout": 120, "when": "on_success"},
                {"name": "after_script", "script": ["tidy"], "timeout": 300, "when": "always"},
                {"name": "release", "script": ["release-cli"], "when": "on_success"}
            ],
            "services": [{"name": "postgres:16", "alias": "db,pg"}]
        }));
        let job = job_of(&p);
        assert_eq!(job.name, "build");
        assert_eq!(job.script, ["make", "make test"]);
        assert_eq!(job.after_script, ["tidy"]);
        assert_eq!(job.timeout, Some(Duration::from_secs(120)));
        assert_eq!(job.services[0].alias, ["db", "pg"]);
        assert_eq!(job.unsupported.len(), 1);
        assert!(job.unsupported[0].0.contains("release"));
    }

    #[test]
    fn raw_variables_keep_their_dollars_and_the_job_token_is_masked() {
        let p = payload(serde_json::json!({
            "id": 3, "token": "job-tok",
            "variables": [{"key": "RAW", "value": "a$B", "raw": true}, {"key": "X", "value": "$RAW"}]
        }));
        let vars = variables_of(&p);
        assert_eq!(vars[0].name, "CI_JOB_TOKEN");
        assert!(vars[0].masked);
        assert_eq!(vars[1].value, "a$$B");
        assert_eq!(vars[2].value, "$RAW");
    }
}

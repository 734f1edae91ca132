//! `[runners.docker]` of a runner's config, applied to each job GitLab sends: the default
//! image, the pull policies and their allowed list, the allowed images and services (glob
//! rules as gitlab-runner's: `*` stays within a path element, `**` crosses them), and the
//! memory and pids limits of the job's container or sandbox.

use crate::runner_config::DockerConfig;
use anyhow::{Result, bail};
use wharf_ci::{Image, Job, PullPolicy};

/// What a runner's `[runners.docker]` says, checked once when the config is (re)loaded.
#[derive(Clone, Debug, Default)]
pub(crate) struct DockerSettings {
    image: Option<String>,
    pull_policy: Vec<PullPolicy>,
    allowed_pull_policies: Vec<PullPolicy>,
    allowed_images: Vec<String>,
    allowed_services: Vec<String>,
    volumes: Vec<String>,
    /// Names this runner's cache volumes (a hash of its URL and token: never the token).
    volume_prefix: String,
    pub limits: wharf_run::Limits,
    pub privileged: bool,
}

/// Why a job may not run on this runner: its log says it, GitLab hears
/// `runner_configuration_error`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub String);

fn policies(key: &str, given: &[String]) -> Result<Vec<PullPolicy>> {
    given
        .iter()
        .map(|p| match PullPolicy::parse(p) {
            Some(policy) => Ok(policy),
            None => bail!("{key}: `{p}` is not a pull policy (always, if-not-present, never)"),
        })
        .collect()
}

fn globs(key: &str, patterns: &[String]) -> Result<()> {
    for pattern in patterns {
        if let Err(e) = glob(pattern) {
            bail!("{key}: `{pattern}` is not a pattern: {e}");
        }
    }
    Ok(())
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

impl DockerSettings {
    /// `docker` checked: pull policies are GitLab's names, patterns compile, sizes parse.
    /// Errors name the key (the caller adds the file and the runner).
    pub fn of(docker: &DockerConfig, url: &str, token: &str) -> Result<DockerSettings> {
        let pull_policy = policies(
            "docker.pull_policy",
            &docker
                .pull_policy
                .as_ref()
                .map(|p| p.to_vec())
                .unwrap_or_default(),
        )?;
        let allowed_pull_policies = policies(
            "docker.allowed_pull_policies",
            &docker.allowed_pull_policies,
        )?;
        globs("docker.allowed_images", &docker.allowed_images)?;
        globs("docker.allowed_services", &docker.allowed_services)?;
        // `memory = ""` is gitlab-runner's "no limit", as a missing key.
        let memory = match docker.memory.as_deref().filter(|m| !m.is_empty()) {
            Some(text) => Some(
                wharf_run::parse_memory_size(text)
                    .map_err(|e| anyhow::anyhow!("docker.memory: {e}"))?,
            ),
            None => None,
        };
        let pids = match docker.pids_limit {
            // gitlab-runner passes 0 and -1 to Docker as "no limit".
            None | Some(0) | Some(-1) => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => bail!("docker.pids_limit: {n} is not a number of processes"),
        };
        for volume in &docker.volumes {
            check_volume(volume)?;
        }
        let runner_hash = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(format!("{url}\n{token}").as_bytes());
            hex::encode(&digest[..6])
        };
        Ok(DockerSettings {
            volumes: docker.volumes.clone(),
            volume_prefix: format!("wharf-runner-{runner_hash}"),
            image: docker.image.clone().filter(|i| !i.is_empty()),
            pull_policy,
            allowed_pull_policies,
            allowed_images: docker.allowed_images.clone(),
            allowed_services: docker.allowed_services.clone(),
            limits: wharf_run::Limits { memory, pids },
            privileged: docker.privileged,
        })
    }

    pub fn has_volumes(&self) -> bool {
        !self.volumes.is_empty()
    }

    /// `volumes` as Docker binds for a job of project `project_id`: a container path alone
    /// becomes a named volume of this runner and project (`/cache` kept across its jobs, as
    /// gitlab-runner's cache volumes; jobs of the project running at once share it).
    pub fn binds(&self, project_id: u64) -> Vec<String> {
        self.volumes
            .iter()
            .map(|volume| {
                if volume.contains(':') {
                    return volume.clone();
                }
                use sha2::Digest as _;
                let path_hash = hex::encode(&sha2::Sha256::digest(volume.as_bytes())[..6]);
                format!(
                    "{}-project-{project_id}-cache-{path_hash}:{volume}",
                    self.volume_prefix
                )
            })
            .collect()
    }

    /// The job as this runner runs it: the runner's image when the job names none, the
    /// runner's pull policy when the job gives none; refused when its image, a service or a
    /// pull policy is not allowed. `expand` expands the job's variables in image names, as
    /// gitlab-runner checks the expanded name.
    pub fn apply(&self, job: &mut Job, expand: &dyn Fn(&str) -> String) -> Result<(), Refusal> {
        if job.image.is_none() {
            if let Some(name) = &self.image {
                job.image = Some(Image {
                    name: name.clone(),
                    entrypoint: None,
                    pull_policy: Vec::new(),
                    docker_user: None,
                    docker_platform: None,
                    span: job.span.clone(),
                });
            }
        }
        if let Some(image) = job.image.as_mut() {
            let name = expand(&image.name);
            // The runner's own image is always allowed (gitlab-runner's "internal" image).
            if self.image.as_deref() != Some(name.as_str()) {
                allowed(&name, "images", &self.allowed_images)?;
            }
            image.pull_policy = self.pull_policies(&name, &image.pull_policy)?;
        }
        for service in &mut job.services {
            let name = expand(&service.name);
            allowed(&name, "services", &self.allowed_services)?;
            service.pull_policy = self.pull_policies(&name, &service.pull_policy)?;
        }
        Ok(())
    }

    /// gitlab-runner's rule: the job's policies, else the runner's; every one of them must be
    /// in `allowed_pull_policies` (by default the runner's `pull_policy`). A runner that sets
    /// neither leaves the job's policies as `wharf run` would use them.
    fn pull_policies(
        &self,
        image: &str,
        from_job: &[PullPolicy],
    ) -> Result<Vec<PullPolicy>, Refusal> {
        if self.pull_policy.is_empty() && self.allowed_pull_policies.is_empty() {
            return Ok(from_job.to_vec());
        }
        let (chosen, source) = if from_job.is_empty() {
            (self.pull_policy.clone(), "Runner config")
        } else {
            (from_job.to_vec(), "GitLab pipeline config")
        };
        let allowed = if self.allowed_pull_policies.is_empty() {
            &self.pull_policy
        } else {
            &self.allowed_pull_policies
        };
        if chosen.iter().all(|p| allowed.contains(p)) {
            return Ok(chosen);
        }
        let names = |list: &[PullPolicy]| {
            list.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        Err(Refusal(format!(
            "invalid pull policy for image \"{image}\": pull_policy ([{}]) defined in {source} is not one of the allowed_pull_policies ([{}])\n  fix: use one of those in the job's `pull_policy:`, or add it to `allowed_pull_policies` in [runners.docker] of the runner's config",
            names(&chosen),
            names(allowed)
        )))
    }
}

/// `HOST:CONTAINER[:MODE]`, `NAME:CONTAINER[:MODE]` or `CONTAINER`, container paths absolute.
fn check_volume(volume: &str) -> Result<()> {
    let parts: Vec<&str> = volume.split(':').collect();
    let container = match parts.as_slice() {
        [container] => container,
        [_, container] => container,
        [_, container, mode] => {
            if mode.is_empty() {
                bail!("docker.volumes: `{volume}` ends with an empty mode (ro, rw...)");
            }
            container
        }
        _ => bail!("docker.volumes: `{volume}` is not HOST:CONTAINER[:MODE] nor a container path"),
    };
    if !container.starts_with('/') {
        bail!("docker.volumes: `{volume}`: the container path must be absolute");
    }
    Ok(())
}

/// gitlab-runner's `verifyAllowedImage`: with no list, anything goes.
fn allowed(name: &str, what: &str, patterns: &[String]) -> Result<(), Refusal> {
    if patterns.is_empty()
        || patterns
            .iter()
            .any(|p| glob(p).is_ok_and(|m| m.is_match(name)))
    {
        return Ok(());
    }
    let list: String = patterns.iter().map(|p| format!("\n- {p}")).collect();
    Err(Refusal(format!(
        "The {name} is not present on list of allowed {what}{list}\n\nPlease check runner's configuration (allowed_{what} in [runners.docker]): https://docs.gitlab.com/runner/configuration/advanced-configuration/#restrict-docker-images-and-services"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> DockerSettings {
        let docker: DockerConfig = toml::from_str(toml_text).unwrap();
        DockerSettings::of(&docker, "https://gitlab.example.com", "glrt-t").unwrap()
    }

    /// A job as GitLab sends it, with `image` and `services` (all with `policy`).
    fn job(image: Option<&str>, policy: &[PullPolicy], services: &[&str]) -> Job {
        let policy: Vec<&str> = policy.iter().map(|p| p.as_str()).collect();
        let payload = serde_json::json!({
            "id": 1, "token": "t", "job_info": {"name": "j", "stage": "test"},
            "steps": [{"name": "script", "script": ["true"], "when": "on_success"}],
            "image": image.map(|name| serde_json::json!({"name": name, "pull_policy": policy})),
            "services": services.iter().map(|name| serde_json::json!({"name": name, "pull_policy": policy})).collect::<Vec<_>>(),
        });
        wharf_gitlab::runner::job_of(&serde_json::from_value(payload).unwrap())
    }

    fn same(text: &str) -> String {
        text.to_string()
    }

    #[test]
    fn a_job_without_image_gets_the_runners_image_and_pull_policy() {
        let s = settings("image = \"alpine:3\"\npull_policy = \"if-not-present\"");
        let mut j = job(None, &[], &[]);
        s.apply(&mut j, &same).unwrap();
        let image = j.image.unwrap();
        assert_eq!(image.name, "alpine:3");
        assert_eq!(image.pull_policy, [PullPolicy::IfNotPresent]);
    }

    #[test]
    fn images_and_services_outside_the_allowed_globs_are_refused_as_gitlab_runner_says() {
        let s = settings(
            "image = \"runner/default:1\"\nallowed_images = [\"registry.example.com/*/*:*\", \"alpine:*\"]\nallowed_services = [\"postgres:**\"]",
        );
        for ok in [
            "alpine:3.20",
            "registry.example.com/group/app:1",
            "runner/default:1",
        ] {
            s.apply(&mut job(Some(ok), &[], &["postgres:16"]), &same)
                .unwrap_or_else(|e| panic!("{ok}: {}", e.0));
        }
        // `*` does not cross `/`.
        let Refusal(why) = s
            .apply(
                &mut job(Some("registry.example.com/a/b/c:1"), &[], &[]),
                &same,
            )
            .unwrap_err();
        assert!(
            why.starts_with("The registry.example.com/a/b/c:1 is not present on list of allowed images\n- registry.example.com/*/*:*\n- alpine:*\n"),
            "{why}"
        );
        let Refusal(why) = s
            .apply(&mut job(Some("alpine:3"), &[], &["redis:7"]), &same)
            .unwrap_err();
        assert!(
            why.starts_with("The redis:7 is not present on list of allowed services"),
            "{why}"
        );
        // The expanded name is checked.
        let expand = |t: &str| t.replace("$IMAGE", "evil:1");
        assert!(
            s.apply(&mut job(Some("$IMAGE"), &[], &[]), &expand)
                .is_err()
        );
    }

    #[test]
    fn pull_policies_follow_gitlab_runners_allowed_list() {
        let s = settings("pull_policy = [\"always\"]");
        let Refusal(why) = s
            .apply(&mut job(Some("alpine"), &[PullPolicy::Never], &[]), &same)
            .unwrap_err();
        assert!(why.starts_with("invalid pull policy for image \"alpine\": pull_policy ([never]) defined in GitLab pipeline config is not one of the allowed_pull_policies ([always])"), "{why}");
        let s = settings(
            "pull_policy = [\"always\"]\nallowed_pull_policies = [\"always\", \"if-not-present\"]",
        );
        let mut j = job(Some("alpine"), &[PullPolicy::IfNotPresent], &["redis"]);
        s.apply(&mut j, &same).unwrap();
        assert_eq!(j.image.unwrap().pull_policy, [PullPolicy::IfNotPresent]);
        // A runner without either key leaves the job's policy alone.
        let s = settings("image = \"alpine\"");
        let mut j = job(Some("alpine"), &[PullPolicy::Never], &[]);
        s.apply(&mut j, &same).unwrap();
        assert_eq!(j.image.unwrap().pull_policy, [PullPolicy::Never]);
    }

    #[test]
    fn sizes_and_names_are_checked_when_the_config_loads() {
        let bad = |text: &str| {
            let docker: DockerConfig = toml::from_str(text).unwrap();
            DockerSettings::of(&docker, "u", "t")
                .unwrap_err()
                .to_string()
        };
        assert!(bad("memory = \"lots\"").starts_with("docker.memory: "));
        assert!(bad("pull_policy = \"sometimes\"").contains("`sometimes` is not a pull policy"));
        assert!(bad("pids_limit = -5").starts_with("docker.pids_limit"));
        assert!(bad("volumes = [\"cache\"]").contains("must be absolute"));
        assert!(bad("volumes = [\"/a:/b:ro:x\"]").contains("is not HOST:CONTAINER"));
        let s = settings("memory = \"512m\"\npids_limit = 100");
        assert_eq!(s.limits.memory, Some(512 << 20));
        assert_eq!(s.limits.pids, Some(100));
    }

    #[test]
    fn volumes_are_docker_binds_and_a_path_alone_is_a_cache_volume_of_the_runner_and_project() {
        let s = settings("volumes = [\"/srv/data:/data:ro\", \"/cache\"]");
        let binds = s.binds(42);
        assert_eq!(binds[0], "/srv/data:/data:ro");
        let (name, path) = binds[1].split_once(':').unwrap();
        assert_eq!(path, "/cache");
        assert!(
            name.starts_with("wharf-runner-") && name.contains("-project-42-cache-"),
            "{name}"
        );
        assert!(!name.contains("glrt"), "{name}");
        assert_eq!(
            s.binds(42),
            binds,
            "the same volume for every job of the project"
        );
        assert_ne!(s.binds(43)[1], binds[1]);
    }
}

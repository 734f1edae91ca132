//! Image pulls for the Docker executor, for the job image and every service image: credentials
//! (GitLab's sources and rules), pull policies (`--pull-policy` wins over the pipeline's) and
//! retries after network errors.

use crate::engine::{Engine, ImageInfo, PullEvent, PullFailure};
use crate::executor::ExecutorContext;
use crate::failure::{JobFailure, Stop};
use crate::log::JobLog;
use crate::report::FailureReason;
use wharf_ci::PullPolicy;
use wharf_oci::{CredentialSources, ImageRef, RegistryAuth, Resolution, Secret};

/// Pulls the images of one job.
pub(crate) struct ImagePuller<'a> {
    pub(crate) context: &'a ExecutorContext<'a>,
    pub(crate) engine: &'a Engine,
    /// The job's own `DOCKER_AUTH_CONFIG` variable.
    pub(crate) job_auth_config: Option<&'a str>,
}

/// One image being pulled, with the credentials found for it.
struct Target<'a> {
    name: &'a str,
    reference: &'a ImageRef,
    auth: Option<RegistryAuth>,
    resolution: Resolution,
}

impl ImagePuller<'_> {
    /// Resolve credentials for `image_name`, then make sure dockerd has the image under the pull
    /// policies. What dockerd says of the image then (`None` if it could not say).
    pub(crate) async fn pull(
        &self,
        image_name: &str,
        image_ref: &ImageRef,
        pull_policy: &[PullPolicy],
        log: &mut JobLog,
    ) -> Result<Option<ImageInfo>, Stop> {
        let env = &self.context.opts.env;
        let sources = CredentialSources {
            job_auth_config: self.job_auth_config.map(|c| Secret(c.to_string())),
            runner_auth_config: env.docker_auth_config.clone().map(Secret),
            docker_config_dir: env.docker_config.clone(),
            home_dir: env.home.clone(),
            path: env.path.clone(),
            job_credentials: env.job_credentials.clone(),
        };
        // Credential helpers are programs: run them off the async workers.
        let resolution = tokio::task::block_in_place(|| wharf_oci::resolve(image_ref, &sources));
        for w in &resolution.warnings {
            log.warn(w);
        }
        if let Some(found) = &resolution.found {
            // Secrets from helpers are only known now: register them before anything else is
            // logged.
            for s in found.auth.secrets() {
                log.add_secret(&s);
            }
            log.info(&format!(
                "Authenticating with credentials from {}",
                found.source
            ));
        }
        let target = Target {
            name: image_name,
            reference: image_ref,
            auth: resolution.found.as_ref().map(|f| f.auth.clone()),
            resolution,
        };
        let policies: Vec<PullPolicy> =
            match (self.context.opts.pull_policy, pull_policy.is_empty()) {
                (Some(p), _) => vec![p],
                (None, false) => pull_policy.to_vec(),
                (None, true) => vec![PullPolicy::Always],
            };
        let known = self.ensure_image(&target, &policies, log).await?;
        let info = match known {
            Some(info) => Ok(Some(info)),
            None => self.engine.inspect_image(image_name).await,
        };
        match info {
            Ok(Some(info)) => {
                let digest = info
                    .repo_digests
                    .first()
                    .map(|d| format!(" with digest {d}"))
                    .unwrap_or_default();
                log.info(&format!(
                    "Using docker image {} for {image_name}{digest} ...",
                    info.id
                ));
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                log.warn(&e.to_string());
                Ok(None)
            }
        }
    }

    /// Try the policies in order (GitLab's fallback); the last failure is the job's.
    async fn ensure_image(
        &self,
        target: &Target<'_>,
        policies: &[PullPolicy],
        log: &mut JobLog,
    ) -> Result<Option<ImageInfo>, Stop> {
        let image_name = target.name;
        for (attempt, policy) in policies.iter().enumerate() {
            if attempt > 0 {
                log.info(&format!(
                    "Attempt #{}: Trying \"{}\" pull policy",
                    attempt + 1,
                    policy.as_str()
                ));
            }
            // `always` pulls whatever is there: asking the daemon first would be a wasted round
            // trip.
            let local = match policy {
                PullPolicy::Always => None,
                _ => self.engine.inspect_image(image_name).await.ok().flatten(),
            };
            let result = match policy {
                PullPolicy::IfNotPresent if local.is_some() => {
                    log.info(
                        "Using locally found image version due to \"if-not-present\" pull policy",
                    );
                    Ok(local)
                }
                PullPolicy::Never if local.is_some() => Ok(local),
                PullPolicy::Never => Err(JobFailure::configuration(format!(
                    "image {image_name} is not present locally and the pull policy is \"never\""
                ))
                .with_hint(format!(
                    "pull it first (`docker pull {image_name}`) or allow pulling with `--pull-policy if-not-present`"
                ))
                .into()),
                _ => self.pull_with_retries(target, log).await.map(|()| None),
            };
            match result {
                Ok(info) => return Ok(info),
                Err(Stop::Failed(failure)) if attempt + 1 < policies.len() => {
                    // Not the job's failure: the next policy may still get the image.
                    failure.log(log);
                    log.warn(&format!(
                        "Failed to pull image with policy \"{}\"",
                        policy.as_str()
                    ));
                }
                Err(stop) => return Err(stop),
            }
        }
        Err(JobFailure::configuration(format!("no pull policy for image {image_name}")).into())
    }

    async fn pull_with_retries(&self, target: &Target<'_>, log: &mut JobLog) -> Result<(), Stop> {
        let opts = self.context.opts;
        let image_name = target.name;
        let image_ref = target.reference;
        let tries = opts.pull_retry_delays.len() + 1;
        for attempt in 0..tries {
            log.info(&format!("Pulling docker image {image_name} ..."));
            let color = opts.console.color;
            let prefixed = log.is_prefixed();
            let console = opts.console.clone();
            let mut statuses = Vec::new();
            let result = {
                let mut on_event = |ev: PullEvent| match ev {
                    PullEvent::Status(s) => statuses.push(s),
                    // Progress bars redraw one line: only when this job has the console to
                    // itself.
                    PullEvent::Progress(p) if color && !prefixed => {
                        console.write(format!("\r\x1b[2K{p}").as_bytes())
                    }
                    PullEvent::Progress(_) => {}
                };
                let mut cancel = opts.cancel.clone();
                tokio::select! {
                    r = self.engine.pull(image_name, target.auth.as_ref(), &mut on_event) => r,
                    _ = cancel.changed() => return Err(Stop::Canceled),
                }
            };
            if color && !prefixed {
                console.write(b"\r\x1b[2K");
            }
            for s in statuses {
                log.info(&s);
            }
            let failure = match result {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let registry = &image_ref.registry;
            let resolution = &target.resolution;
            let failure = match failure {
                PullFailure::Network(msg) if attempt + 1 < tries => {
                    let delay = opts.pull_retry_delays[attempt];
                    log.warn(&format!(
                        "Failed to pull image {image_name}: cannot reach registry {registry}: {msg}\nWill be retried in {:.0?} ...",
                        delay
                    ));
                    tokio::time::sleep(delay).await;
                    continue;
                }
                PullFailure::Network(msg) => JobFailure::new(
                    FailureReason::ExternalDependencyFailure,
                    format!(
                        "Failed to pull image {image_name}: cannot reach registry {registry} after {tries} attempts: {msg}"
                    ),
                )
                .with_hint("check that the registry is up and reachable from the Docker daemon"),
                // Without credentials, a registry's "denied" also means "tell me who you are".
                PullFailure::NoCredentials(msg) | PullFailure::Denied(msg)
                    if resolution.found.is_none() =>
                {
                    // Two findings: the refusal, then where wharf looked for credentials.
                    log.error(&format!(
                        "Failed to pull image {image_name}: registry {registry} requires credentials ({msg})"
                    ));
                    JobFailure::configuration(resolution.explain_missing(image_ref))
                }
                PullFailure::NoCredentials(msg) | PullFailure::Denied(msg) => {
                    let source = resolution
                        .found
                        .as_ref()
                        .map(|f| f.source.as_str())
                        .unwrap_or("none");
                    let key = resolution
                        .found
                        .as_ref()
                        .map(|f| f.key.as_str())
                        .unwrap_or(registry);
                    JobFailure::configuration(format!(
                        "Failed to pull image {image_name}: registry {registry} rejected the credentials from {source} (entry \"{key}\"): {msg}"
                    ))
                    .with_hint(format!(
                        "check the username and password of that entry (run `wharf login {registry} -u <user> --password-stdin` to test and store new ones), and that the user may pull {}",
                        image_ref.repository
                    ))
                }
                PullFailure::NotFound(msg) => JobFailure::configuration(format!(
                    "Failed to pull image {image_name}: not found on registry {registry}: {msg}"
                ))
                .with_hint("check the image name and tag in `image:`"),
                PullFailure::Other(msg) => JobFailure::new(
                    FailureReason::ImagePullFailure,
                    format!("Failed to pull image {image_name}: {msg}"),
                ),
            };
            return Err(failure.into());
        }
        Err(JobFailure::configuration(format!("no pull attempt for image {image_name}")).into())
    }
}

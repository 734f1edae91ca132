//! The sandbox's images: pulled into wharf's store with the job's credentials, their config
//! (what a process in them takes) and who their processes run as.

use crate::executor::docker::resolve_job_user;
use crate::executor::docker::user::{JobUser, UserSpec};
use crate::failure::JobFailure;
use crate::log::JobLog;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::sync::mpsc;
use wharf_ci::PullPolicy;
use wharf_oci::CredentialSources;

/// The parts of an image's config a job's process takes (Docker's `config` object).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ImageConfigFile {
    #[serde(default)]
    pub(super) config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RuntimeConfig {
    #[serde(rename = "Env", default)]
    pub(super) env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub(super) entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub(super) cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub(super) working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub(super) user: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    pub(super) exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

impl RuntimeConfig {
    /// `KEY=value` from the image, as Docker gives them to its containers.
    pub(super) fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// An image from wharf's store, ready to be a sandbox's root.
pub(super) struct StoredImage {
    /// Its layer folders, top first.
    pub(super) lower: Vec<PathBuf>,
    pub(super) config: RuntimeConfig,
}

/// Pull `image_name` into the store (with `sources`, `policies`), logging as the
/// Docker executor does; its layers and config.
pub(super) async fn pull(
    store: &wharf_image::Store,
    image_name: &str,
    policies: &[PullPolicy],
    sources: CredentialSources,
    log: &mut JobLog,
) -> Result<StoredImage, JobFailure> {
    let options = wharf_image::PullOptions {
        policies: policies.iter().map(|p| pull_policy(*p)).collect(),
        sources,
        ..wharf_image::PullOptions::default()
    };
    let (events, mut received) = mpsc::unbounded_channel();
    let on_event = move |e: wharf_image::PullEvent| {
        let _ = events.send(e);
    };
    let pulled = wharf_image::pull(store, image_name, &options, &on_event).await;
    while let Ok(event) = received.try_recv() {
        log_pull_event(event, log);
    }
    let record = pulled.map_err(|e| {
        let hint = e.hint().map(str::to_string);
        let failure = JobFailure::configuration(format!("pulling {image_name}: {e}"));
        match hint {
            Some(h) => failure.with_hint(&h),
            None => failure,
        }
    })?;
    let config: ImageConfigFile = store
        .read_blob(&record.config_digest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut lower = Vec::new();
    for layer in record.layers.iter().rev() {
        lower.push(
            store
                .layer_dir(&layer.chain_id)
                .map_err(|e| JobFailure::system(e.to_string()))?,
        );
    }
    Ok(StoredImage {
        lower,
        config: config.config,
    })
}

/// Who an image's processes run as: `user` (the job's `image: docker: user:` or the image's
/// `User`; `given` says which) resolved against the image's own account files.
pub(super) fn image_user(
    image_name: &str,
    lower: &[PathBuf],
    user: Option<&str>,
    given: Option<&wharf_ci::Image>,
) -> Result<JobUser, JobFailure> {
    let spec = UserSpec::parse(user.unwrap_or(""));
    if spec.is_plainly_root() {
        return Ok(JobUser::ROOT);
    }
    let (passwd, group) = if spec.needs_lookup() {
        (
            read_from_layers(lower, "etc/passwd"),
            read_from_layers(lower, "etc/group"),
        )
    } else {
        (None, None)
    };
    resolve_job_user(
        &spec,
        passwd.as_deref(),
        group.as_deref(),
        image_name,
        given,
    )
}

/// `path` (e.g. `etc/passwd`) as the image shows it: from the topmost layer that has it, read
/// inside that layer (`InRoot`: a link cannot lead out of it). At most 1 MiB.
fn read_from_layers(layers_top_first: &[PathBuf], path: &str) -> Option<String> {
    use std::io::Read;
    for layer in layers_top_first {
        let root = wharf_fs::Root::open(layer, wharf_fs::Resolve::InRoot).ok()?;
        match root.try_metadata(path) {
            Ok(Some(meta)) => {
                // A whiteout (character device 0/0) hides the file of the layers below.
                if meta.file_type().is_file() || meta.file_type().is_symlink() {
                    let mut text = String::new();
                    root.open_read(path)
                        .ok()?
                        .take(1 << 20)
                        .read_to_string(&mut text)
                        .ok()?;
                    return Some(text);
                }
                return None;
            }
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
    None
}

fn pull_policy(p: PullPolicy) -> wharf_image::PullPolicy {
    match p {
        PullPolicy::Always => wharf_image::PullPolicy::Always,
        PullPolicy::IfNotPresent => wharf_image::PullPolicy::IfNotPresent,
        PullPolicy::Never => wharf_image::PullPolicy::Never,
    }
}

fn log_pull_event(event: wharf_image::PullEvent, log: &mut JobLog) {
    use wharf_image::PullEvent as E;
    match event {
        E::Credentials(source) => {
            log.info(&format!("Authenticating with credentials from {source}"));
        }
        E::Warning(w) => log.warn(&w),
        E::Info(i) => log.info(&i),
        E::Manifest(digest) => log.info(&format!("Using image {digest}")),
        E::LayerDone { digest, .. } => log.info(&format!("Pulled layer {digest}")),
        E::LayerStart { .. } | E::LayerProgress { .. } | E::LayerPresent { .. } => {}
    }
}

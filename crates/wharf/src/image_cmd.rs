//! `wharf pull` and `wharf images`: wharf's own image store (crates/wharf-image), without Docker.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use wharf_image::{ImageError, PullEvent, PullOptions, PullPolicy, Store};

#[derive(Args)]
pub struct StoreArgs {
    /// The image store folder [default: $WHARF_HOME, else $XDG_DATA_HOME/wharf, i.e.
    /// ~/.local/share/wharf].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
}

#[derive(Args)]
pub struct PullArgs {
    /// The image, e.g. `registry.example.com:5000/team/app:1.2` (Docker's reference grammar).
    image: String,
    /// GitLab's pull policy; repeat for a fallback list tried in order.
    #[arg(long = "pull-policy", value_enum, default_value = "always")]
    pull_policy: Vec<PolicyFlag>,
    /// The variant of a multi-platform image to pull.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Allow plain http and unverified TLS certificates for a registry that is not on loopback.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyFlag {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: Option<ImagesCommand>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Forget an image (its layers go with the next `prune` unless another image uses them).
    Rm {
        /// As pulled, e.g. `127.0.0.1:5000/app:1`.
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove every blob and unpacked layer no image references.
    Prune {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn open_store(args: &StoreArgs) -> Result<Store> {
    let home = match &args.home {
        Some(h) => h.clone(),
        None => Store::default_home().ok_or_else(|| {
            anyhow!("no image store folder: set WHARF_HOME or HOME, or pass --home DIR")
        })?,
    };
    Store::open(&home).with_context(|| format!("opening the image store {}", home.display()))
}

/// An error with its fix on the next line.
fn explained(e: ImageError) -> anyhow::Error {
    match e.hint() {
        Some(hint) => anyhow!("{e}\nTo fix it: {hint}"),
        None => anyhow!("{e}"),
    }
}

pub async fn pull(args: PullArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let platform = wharf_image::Platform::parse(&args.platform).ok_or_else(|| {
        anyhow!(
            "--platform `{}`: expected os/arch[/variant], e.g. linux/amd64",
            args.platform
        )
    })?;
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let opts = PullOptions {
        policies: args
            .pull_policy
            .iter()
            .map(|p| match p {
                PolicyFlag::Always => PullPolicy::Always,
                PolicyFlag::IfNotPresent => PullPolicy::IfNotPresent,
                PolicyFlag::Never => PullPolicy::Never,
            })
            .collect(),
        platform,
        insecure: args.insecure,
        concurrency: 4,
        sources: wharf_oci::CredentialSources {
            job_auth_config: None,
            runner_auth_config: std::env::var("DOCKER_AUTH_CONFIG")
                .ok()
                .filter(|v| !v.is_empty())
                .map(wharf_oci::Secret),
            docker_config_dir: env("DOCKER_CONFIG").map(PathBuf::from),
            home_dir: env("HOME").map(PathBuf::from),
            path: env("PATH"),
            job_credentials: None,
        },
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = Progress::new(terminal);
    println!("Pulling image {} ...", args.image);
    let started = Instant::now();
    let on_event = |event: PullEvent| progress.event(event);
    let result = wharf_image::pull(&store, &args.image, &opts, &on_event).await;
    progress.finish();
    let record = result.map_err(explained)?;
    println!(
        "Pulled {} ({}, {} layers, {} compressed, {} unpacked) in {:.2?}",
        record.reference,
        record.manifest_digest,
        record.layers.len(),
        human(record.compressed_size()),
        human(store.unpacked_size(&record)),
        started.elapsed()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn images(args: ImagesArgs) -> Result<ExitCode> {
    // `--home` may come before the subcommand (`wharf images --home D prune`) or after it.
    let outer_home = args.store.home.clone();
    let with_outer = |store: StoreArgs| StoreArgs {
        home: store.home.or_else(|| outer_home.clone()),
    };
    match args.command {
        None => {
            let store = open_store(&args.store)?;
            let images = store.images().map_err(explained)?;
            println!(
                "{:<50} {:<19} {:>7} {:>11} {:>10}  PULLED",
                "REFERENCE", "DIGEST", "LAYERS", "COMPRESSED", "UNPACKED"
            );
            for image in images {
                let digest = image
                    .manifest_digest
                    .get(..19)
                    .unwrap_or(&image.manifest_digest);
                println!(
                    "{:<50} {:<19} {:>7} {:>11} {:>10}  {}",
                    image.reference,
                    digest,
                    image.layers.len(),
                    human(image.compressed_size()),
                    human(store.unpacked_size(&image)),
                    image.pulled_at
                );
            }
            println!("store: {}", store.home().display());
        }
        Some(ImagesCommand::Rm { reference, store }) => {
            let store = open_store(&with_outer(store))?;
            let key = wharf_oci::ImageRef::parse(&reference)
                .map(|r| wharf_image::record_key(&r))
                .unwrap_or(reference);
            store.remove_image(&key).map_err(explained)?;
            println!("Removed {key} (run `wharf images prune` to free its layers)");
        }
        Some(ImagesCommand::Prune { store }) => {
            let store = open_store(&with_outer(store))?;
            let report = store.prune().map_err(explained)?;
            println!(
                "Removed {} blobs ({}) and {} unpacked layers",
                report.blobs,
                human(report.bytes),
                report.layers
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `12.3 MB` (powers of 1000, as Docker shows sizes).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// Pull progress: one redrawn line per layer on a terminal (bytes and rate), plain lines
/// otherwise.
struct Progress {
    terminal: bool,
    state: Mutex<ProgressState>,
}

struct LayerLine {
    digest: String,
    size: u64,
    bytes: u64,
    started: Instant,
    status: String,
}

#[derive(Default)]
struct ProgressState {
    layers: Vec<LayerLine>,
    drawn: usize,
    last_draw: Option<Instant>,
}

impl Progress {
    fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            state: Mutex::new(ProgressState::default()),
        }
    }

    fn event(&self, event: PullEvent) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let line = |text: String| {
            let _ = writeln!(std::io::stderr(), "{text}");
        };
        match event {
            PullEvent::Credentials(source) => {
                self.clear(&mut state);
                line(format!("Authenticating with credentials from {source}"));
            }
            PullEvent::Warning(w) => {
                self.clear(&mut state);
                line(format!("WARNING: {w}"));
            }
            PullEvent::Info(i) => {
                self.clear(&mut state);
                line(i);
            }
            PullEvent::Manifest(digest) => {
                self.clear(&mut state);
                line(format!("Manifest {digest}"));
            }
            PullEvent::LayerPresent { digest } => {
                self.clear(&mut state);
                line(format!("{}: already present", short(&digest)));
            }
            PullEvent::LayerStart { digest, size } => {
                if !self.terminal {
                    line(format!("{}: downloading {}", short(&digest), human(size)));
                }
                state.layers.push(LayerLine {
                    digest,
                    size,
                    bytes: 0,
                    started: Instant::now(),
                    status: "downloading".into(),
                });
                self.draw(&mut state, true);
            }
            PullEvent::LayerProgress { digest, bytes } => {
                if let Some(l) = state.layers.iter_mut().find(|l| l.digest == digest) {
                    l.bytes = bytes;
                }
                self.draw(&mut state, false);
            }
            PullEvent::LayerDone { digest, report } => {
                let mut status = format!(
                    "unpacked {} entries, {}",
                    report.entries,
                    human(report.bytes)
                );
                if report.skipped_devices > 0 {
                    status.push_str(&format!(
                        ", {} device nodes skipped (not permitted here)",
                        report.skipped_devices
                    ));
                }
                if report.skipped_xattrs > 0 {
                    status.push_str(&format!(
                        ", {} extended attributes not set",
                        report.skipped_xattrs
                    ));
                }
                if report.copied_up_links > 0 {
                    status.push_str(&format!(
                        ", {} hard links to lower layers copied",
                        report.copied_up_links
                    ));
                }
                if self.terminal {
                    if let Some(l) = state.layers.iter_mut().find(|l| l.digest == digest) {
                        l.status = status;
                        l.bytes = l.size;
                    }
                    self.draw(&mut state, true);
                } else {
                    line(format!("{}: {status}", short(&digest)));
                }
            }
        }
    }

    /// Redraw the layer lines (at most 10 times a second unless `force`).
    fn draw(&self, state: &mut ProgressState, force: bool) {
        if !self.terminal {
            return;
        }
        let now = Instant::now();
        if !force
            && state
                .last_draw
                .is_some_and(|t| now.duration_since(t).as_millis() < 100)
        {
            return;
        }
        state.last_draw = Some(now);
        let mut out = String::new();
        if state.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", state.drawn));
        }
        for l in &state.layers {
            let secs = now.duration_since(l.started).as_secs_f64().max(0.001);
            let rate = human((l.bytes as f64 / secs) as u64);
            let status = if l.status == "downloading" {
                format!(
                    "downloading {} / {} ({rate}/s)",
                    human(l.bytes),
                    human(l.size)
                )
            } else {
                l.status.clone()
            };
            out.push_str(&format!("\r\x1b[2K{}: {status}\n", short(&l.digest)));
        }
        state.drawn = state.layers.len();
        let _ = std::io::stderr().write_all(out.as_bytes());
    }

    /// Keep what is drawn and start below it.
    fn clear(&self, state: &mut ProgressState) {
        if self.terminal {
            state.layers.clear();
            state.drawn = 0;
        }
    }

    fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            self.draw(&mut state, true);
        }
    }
}

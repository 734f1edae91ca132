//! `wharf registry ...`: serve the access-controlled OCI registry, collect its garbage, and
//! manage its htpasswd file.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use wharf_registry::auth::htpasswd::{self, Edit, HtpasswdEditor};
use wharf_registry::auth::{AuthConfig, AuthMode, ServerFacts};
use wharf_registry::config::StorageLocation;
use wharf_registry::{Config, GcOptions};

#[derive(Args)]
#[command(
    about = "Serve an access-controlled OCI registry, collect its garbage, manage its users",
    long_about = "An OCI Distribution Spec v1.1 registry with access control.\n\n\
Authentication: htpasswd Basic (bcrypt, files made by `htpasswd -B` work as is), or Docker token \
auth with a built-in token service at /token on the same server. A policy in the config file \
([auth] table) gives users, groups and anonymous pull/push/delete on repository patterns; \
without one, every user of the htpasswd file may do everything and anonymous nothing."
)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Serve the registry (in this process, in the foreground) until SIGTERM or Ctrl-C.
    ///
    /// Ready as soon as GET /v2/ answers. Refuses to start without authentication unless
    /// `--auth none` is given. Command-line flags override the config file.
    Serve(ServeArgs),
    /// Remove blobs no manifest references (mark and sweep), and expired upload sessions.
    ///
    /// Nothing written or used within the grace period (`gc_grace` in the config file) is
    /// removed, so it is safe while pushes run.
    Gc(GcArgs),
    /// Add, remove or change users of an htpasswd file (bcrypt).
    ///
    /// The file is rewritten atomically with mode 0600, other lines kept as they are. A running
    /// server notices the change by itself.
    User(UserArgs),
    /// Import an OCI image layout (a folder with `index.json` and `blobs/`, as `skopeo copy
    /// oci:` or `docker buildx --output type=oci` write) into the registry's storage as NAME:TAG,
    /// without a running server or a push client. An image index (`skopeo copy --all`) comes
    /// with its platforms' manifests. Every digest and size is checked before anything is
    /// written; blobs are streamed, not held in memory.
    Import(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    target: GcTarget,
    /// The OCI image layout folder.
    layout: PathBuf,
    /// The entry of the layout's `index.json` to import, by its ref name (the REF of `skopeo
    /// copy ... oci:DIR:REF`); needed when it lists more than one.
    #[arg(long = "ref", value_name = "REF")]
    layout_ref: Option<String>,
    /// Where it goes: `repository/name:tag`.
    name: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthFlag {
    /// No authentication at all: everyone may pull, push and delete everything.
    None,
    /// HTTP Basic against the htpasswd file.
    Basic,
    /// Docker token auth; the token service is served at /token on the same server.
    Token,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (addr, root, tls, upload_expiry, gc_grace, [auth] with the policy,
    /// [limits] on connections, upload sessions and failed logins).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]. Plain HTTP only on loopback unless the
    /// config file says `allow_plain_http = true`.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// Storage folder [default: /var/lib/wharf-registry]. The token signing key is kept in
    /// <root>/auth/.
    /// With S3 storage it still holds local files (the copy of the shared token signing key).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Where blobs, manifests and upload sessions live: `s3://BUCKET[/PREFIX]`, or
    /// `file:///path` (the same as --root). Overrides `[storage] url`. S3 credentials come from
    /// `[storage]` or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (no other
    /// AWS_* variable is read).
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// S3-compatible server, like http://127.0.0.1:7480 (path-style requests; plain http only
    /// when given here). Overrides `[storage] endpoint`.
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 region (overrides `[storage] region`) [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Stream blobs through the registry instead of answering GET/HEAD with a 307 to a
    /// presigned S3 URL (overrides `[storage] redirect`).
    #[arg(long)]
    s3_stream_blobs: bool,
    /// Authentication mode (overrides `[auth] mode`).
    #[arg(long, value_enum, value_name = "MODE")]
    auth: Option<AuthFlag>,
    /// htpasswd file (bcrypt entries; overrides `[auth] htpasswd`). Without a policy in the
    /// config file, every user listed may pull, push and delete, and anonymous nothing.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Open connections at most (overrides `[limits] max_connections`) [default: 3/4 of the
    /// open-files limit, at most 16384]. At the cap the longest idle connection makes room.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Time a client has to send a request's head, like 10s (overrides `[limits]
    /// header_timeout`) [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = wharf_registry::config::parse_duration)]
    header_timeout: Option<Duration>,
    /// Connections without traffic and without a request in progress are closed after this,
    /// like 60s (overrides `[limits] idle_timeout`) [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = wharf_registry::config::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Open upload sessions per user, or per client address when anonymous (overrides
    /// `[limits] upload_sessions_per_subject`) [default: 100].
    #[arg(long, value_name = "N")]
    upload_sessions_per_subject: Option<usize>,
    /// Open upload sessions per repository (overrides `[limits]
    /// upload_sessions_per_repository`) [default: 1000].
    #[arg(long, value_name = "N")]
    upload_sessions_per_repository: Option<usize>,
    /// A load balancer in front of this replica (an address, or a network like 10.0.0.0/24;
    /// repeat for several): its `X-Forwarded-For` names the client that failed logins and
    /// anonymous upload sessions are counted against. Replaces `trusted_proxies` of the config.
    #[arg(long = "trusted-proxy", value_name = "ADDR|NET", value_parser = wharf_registry::client_addr::parse_trusted_proxy)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections from the trusted proxies start with a PROXY protocol header (v1 or v2, as
    /// haproxy's send-proxy-v2 sends) naming the client: for balancers in TCP mode.
    #[arg(long)]
    proxy_protocol: bool,
}

#[derive(Args)]
#[group(multiple = false)]
struct GcTarget {
    /// Config file giving the storage (root folder or `[storage]`) and the grace period.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Storage folder (grace period: 1h).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Args)]
struct GcArgs {
    #[command(flatten)]
    target: GcTarget,
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user (fails if it exists: use `passwd`).
    Add(UserEdit),
    /// Remove a user.
    Remove(UserFile),
    /// Change a user's password (fails if it does not exist: use `add`).
    Passwd(UserEdit),
}

#[derive(Args)]
struct UserFile {
    /// User name (no `:` or spaces).
    user: String,
    /// The htpasswd file [default: `[auth] htpasswd` of --config].
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Take the htpasswd file from this registry config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct UserEdit {
    #[command(flatten)]
    file: UserFile,
    /// bcrypt cost, 4 to 31: each step doubles the time of a check (10: ~60 ms here).
    #[arg(long, value_name = "N", default_value_t = htpasswd::DEFAULT_COST)]
    cost: u32,
    /// Read the password from standard input (first line) instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

pub async fn run(args: RegistryArgs) -> Result<ExitCode> {
    match args.command {
        RegistryCommand::Serve(a) => serve(a).await,
        RegistryCommand::Gc(a) => gc(a).await,
        RegistryCommand::User(a) => user(a),
        RegistryCommand::Import(a) => import(a).await,
    }
}

fn load_config(path: Option<&Path>) -> Result<(Config, PathBuf)> {
    match path {
        Some(p) => {
            let config = Config::load(p)?;
            let base = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            Ok((config, base))
        }
        None => Ok((Config::default(), PathBuf::from("."))),
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir()
        .context("finding the current folder")?
        .join(p))
}

fn init_logging() {
    // WHARF_LOG takes tracing's filter syntax (e.g. `info`, `wharf_registry=debug`).
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Keeps buffers up to 8 MiB in glibc's heap instead of a fresh `mmap` each. hyper reads a
/// request body into ~400 KiB buffers, a new one each time the last is still queued; glibc
/// maps every allocation at least as large as the largest mapped block freed so far, so each
/// came as fresh pages, zeroed and faulted in while the kernel copied the socket's bytes in:
/// 16,000-32,000 page faults per 256 MiB upload. Measured on the release build (`perf stat`,
/// 5 alternating pairs of 5 uploads): 280 → 221 ms CPU per upload (−21 %), faults ~30,000 →
/// ~1,200. The price is memory kept for reuse: 37 instead of 27 MiB resident after uploads,
/// 60 MiB after the whole registry bench (target < 100 MB). A lower trim threshold gives it
/// back and brings the faults back (2 MiB: 13,000-22,000 per upload).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_request_buffers_in_the_heap() {
    // SAFETY: mallopt only changes the allocator's thresholds (thread-safe in glibc); no
    // pointer is passed and no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        // Free memory at the heap's top is given back beyond this, not after every request.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_request_buffers_in_the_heap() {}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    init_logging();
    keep_request_buffers_in_the_heap();
    let (mut config, base) = load_config(args.config.as_deref())?;
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    if let Some(root) = &args.root {
        config.root = absolute(root.clone())?;
    }
    apply_storage_flags(&mut config, &args)?;
    if !args.trusted_proxies.is_empty() {
        config.trusted_proxies = args.trusted_proxies.clone();
    }
    if args.proxy_protocol {
        config.proxy_protocol = true;
    }
    let limits = &mut config.limits;
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    if let Some(d) = args.header_timeout {
        limits.header_timeout = d;
    }
    if let Some(d) = args.idle_timeout {
        limits.idle_timeout = d;
    }
    if let Some(n) = args.upload_sessions_per_subject {
        limits.upload_sessions_per_subject = n;
    }
    if let Some(n) = args.upload_sessions_per_repository {
        limits.upload_sessions_per_repository = n;
    }
    limits.check().map_err(anyhow::Error::msg)?;
    let mut auth = AuthConfig::from_table(&config.auth, &absolute(base)?)?;
    if let Some(mode) = args.auth {
        auth.mode = Some(match mode {
            AuthFlag::None => AuthMode::None,
            AuthFlag::Basic => AuthMode::Basic,
            AuthFlag::Token => AuthMode::Token,
        });
    }
    if let Some(h) = args.htpasswd {
        auth.htpasswd = Some(absolute(h)?);
    }
    if auth.mode.is_none() {
        eprintln!(
            "error: refusing to start without authentication.\n  \
- Basic:  wharf registry serve --auth basic --htpasswd FILE\n  \
- Tokens: wharf registry serve --auth token --htpasswd FILE\n  \
- Open:   wharf registry serve --auth none   (anyone may pull, push and delete)\n\
Create the file with: wharf registry user add USER --htpasswd FILE"
        );
        return Ok(ExitCode::from(2));
    }
    std::fs::create_dir_all(&config.root)
        .with_context(|| format!("creating the root folder {}", config.root.display()))?;
    if auth.mode == Some(AuthMode::Token) && auth.token.key_file.is_none() {
        if let Some(path) = shared_signing_key(&config).await? {
            auth.token.key_file = Some(path);
        }
    }
    let facts = ServerFacts {
        root: config.root.clone(),
        tls: config.tls.is_some(),
        default_host: config.addr.to_string(),
    };
    let setup = wharf_registry::auth::build(&auth, &facts)?;
    tracing::info!("{}", setup.summary);
    let extra = setup.routes.unwrap_or_default();
    wharf_registry::serve(
        config,
        setup.authorizer,
        extra,
        wharf_registry::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// With storage shared by replicas (S3), the token signing key they must all sign with: kept in
/// the storage (the first replica to start makes it), copied to `<root>/auth/` for the token
/// service to load. `None` for the filesystem, whose key stays in `<root>/auth/` as before.
async fn shared_signing_key(config: &Config) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt as _;
    let storage = wharf_registry::open_storage(config)?;
    // The key is created with a conditional write: check the server honours them first (the
    // server checks again when it starts serving).
    storage.check_server().await?;
    let fresh = wharf_registry::auth::jwt::SigningKey::generate_pem()?;
    let Some(pem) = storage
        .shared_document("token-signing-key.pem", fresh.into())
        .await?
    else {
        return Ok(None);
    };
    let dir = config.root.join("auth");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("shared-token-signing-key.pem");
    let pem = std::str::from_utf8(&pem).context("the shared token signing key is not PEM text")?;
    htpasswd::write_atomically(&path, pem)?;
    Ok(Some(path))
}

/// `--storage` and the `--s3-*` flags over the config file's `[storage]`.
fn apply_storage_flags(config: &mut Config, args: &ServeArgs) -> Result<()> {
    if let Some(url) = &args.storage {
        match StorageLocation::parse(url).map_err(anyhow::Error::msg)? {
            StorageLocation::File(root) => {
                if args.root.is_some() && config.root != root {
                    bail!(
                        "--root {} and --storage {url} name two folders: give one",
                        config.root.display()
                    );
                }
                config.root = root;
                config.storage.url = None;
            }
            StorageLocation::S3 { .. } => config.storage.url = Some(url.clone()),
        }
    }
    if let Some(endpoint) = &args.s3_endpoint {
        config.storage.endpoint = Some(endpoint.clone());
    }
    if let Some(region) = &args.s3_region {
        config.storage.region = Some(region.clone());
    }
    if args.s3_stream_blobs {
        config.storage.redirect = false;
    }
    config.storage_location().map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn gc(args: GcArgs) -> Result<ExitCode> {
    init_logging();
    let (mut config, _) = load_config(args.target.config.as_deref())?;
    if let Some(root) = args.target.root {
        config.root = absolute(root)?;
    } else if args.target.config.is_none() {
        bail!("say which registry: --root DIR or --config FILE");
    }
    let opts = GcOptions {
        dry_run: args.dry_run,
        grace: config.gc_grace,
        upload_expiry: config.upload_expiry,
    };
    let location = config
        .storage_location()
        .map_err(anyhow::Error::msg)?
        .to_string();
    let report = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || wharf_registry::gc_with_config(&config, &opts))
            .await
            .context("the gc task failed")??
    };
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let skipped = match report.blobs_skipped.len() {
        0 => String::new(),
        n => format!(
            "; left {n} unused blobs for the next gc (a storage error, logged with each digest)"
        ),
    };
    println!(
        "{location}: {verb} {} blobs ({} bytes), {} manifests, {} upload sessions, {} temporary files; kept {} blobs{skipped}",
        report.blobs_removed.len(),
        report.bytes_freed,
        report.manifests_removed.len(),
        report.uploads_removed,
        report.temporary_files_removed,
        report.blobs_kept,
    );
    Ok(ExitCode::SUCCESS)
}

async fn import(args: ImportArgs) -> Result<ExitCode> {
    use wharf_registry::names::{Reference, RepoName};
    let (mut config, _) = load_config(args.target.config.as_deref())?;
    if let Some(root) = args.target.root {
        config.root = absolute(root)?;
    } else if args.target.config.is_none() {
        bail!("say which registry: --root DIR or --config FILE");
    }
    let (repo, tag) = args
        .name
        .rsplit_once(':')
        .filter(|(r, _)| !r.is_empty())
        .with_context(|| format!("`{}`: give the name as repository:tag", args.name))?;
    let repo = RepoName::parse(repo).with_context(|| format!("repository `{repo}`"))?;
    let reference = Reference::parse(tag).with_context(|| format!("tag `{tag}`"))?;
    crate::registry_import::import(
        &config,
        &args.layout,
        args.layout_ref.as_deref(),
        &repo,
        &reference,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn htpasswd_path(file: &UserFile) -> Result<PathBuf> {
    if let Some(p) = &file.htpasswd {
        return Ok(p.clone());
    }
    if let Some(c) = &file.config {
        let (config, base) = load_config(Some(c))?;
        let auth = AuthConfig::from_table(&config.auth, &base)?;
        if let Some(p) = auth.htpasswd {
            return Ok(p);
        }
        bail!(
            "{} has no [auth] htpasswd: give --htpasswd FILE",
            c.display()
        );
    }
    bail!("say which file: --htpasswd FILE (or --config FILE with [auth] htpasswd)")
}

/// Holds an exclusive lock on the htpasswd file's folder, so two edits never lose each other's
/// change (the file itself is replaced by rename, so it cannot carry the lock).
struct FolderLock(#[allow(dead_code)] std::fs::File);

fn lock_folder(path: &Path) -> Result<FolderLock> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let f = std::fs::File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", dir.display()))?;
    Ok(FolderLock(f))
}

fn read_password(user: &str, from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text.lines().next().unwrap_or_default().to_string()
    } else if std::io::stdin().is_terminal() {
        let first = prompt_hidden(&format!("New password for {user}: "))?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    } else {
        bail!(
            "give the password with --password-stdin: `printf '%s' \"$PASSWORD\" | wharf registry user add {user} --htpasswd FILE --password-stdin`"
        );
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

/// Read one line from the terminal without echoing it.
fn prompt_hidden(prompt: &str) -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).context("reading the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning off the echo")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn user(args: UserArgs) -> Result<ExitCode> {
    let (file, edit) = match &args.action {
        UserAction::Add(e) | UserAction::Passwd(e) => (&e.file, Some(e)),
        UserAction::Remove(f) => (f, None),
    };
    htpasswd::validate_user(&file.user).map_err(anyhow::Error::msg)?;
    let path = htpasswd_path(file)?;
    let hash = match edit {
        Some(e) => {
            let password = read_password(&file.user, e.password_stdin)?;
            Some(htpasswd::hash_password(&password, e.cost)?)
        }
        None => None,
    };
    let _lock = lock_folder(&path)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && matches!(args.action, UserAction::Add(_)) =>
        {
            String::new()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut editor = HtpasswdEditor::new(&text);
    let user = &file.user;
    let message = match (&args.action, hash) {
        (UserAction::Add(_), Some(h)) => {
            if editor.contains(user) {
                bail!(
                    "user {user} already exists in {}: use `wharf registry user passwd {user}`",
                    path.display()
                );
            }
            editor.set(user, &h);
            format!("added user {user} to {}", path.display())
        }
        (UserAction::Passwd(_), Some(h)) => {
            if !editor.contains(user) {
                bail!(
                    "no user {user} in {}: use `wharf registry user add {user}`",
                    path.display()
                );
            }
            let edit = editor.set(user, &h);
            debug_assert_eq!(edit, Edit::Replaced);
            format!("changed the password of {user} in {}", path.display())
        }
        _ => {
            if !editor.remove(user) {
                bail!("no user {user} in {}", path.display());
            }
            format!("removed user {user} from {}", path.display())
        }
    };
    htpasswd::write_atomically(&path, &editor.text())?;
    eprintln!("{message}");
    Ok(ExitCode::SUCCESS)
}

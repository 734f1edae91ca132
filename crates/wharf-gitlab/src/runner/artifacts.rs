//! Job artifacts over the runner protocol (gitlab-runner `network/gitlab.go`
//! `UploadRawArtifacts`/`DownloadArtifacts`, `commands/helpers/artifacts_uploader.go`): the
//! archive formats GitLab takes (zip for `archive`, gzip for reports, raw), the upload
//! (`POST jobs/:id/artifacts`, multipart) and the download of a dependency's archive
//! (`GET jobs/:id/artifacts` with the dependency's token, redirects to object storage followed
//! without the token), and unpacking a downloaded zip without ever writing outside its folder.

use super::client::{RunnerClient, RunnerError, request_id, status_error};
use super::spec::{Dependency, JobPayload};
use crate::http::error_chain;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use url::Url;
use wharf_fs::read_limit::LimitedReader;
use wharf_fs::{FileKind, Root};

/// Why an archive could not be made or unpacked. Messages name the archive and the entry.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Confined(#[from] wharf_fs::Error),
    #[error("{}: not a readable zip archive: {reason}", archive.display())]
    Zip { archive: PathBuf, reason: String },
    #[error("{}: not a readable tar archive: {reason}", archive.display())]
    Tar { archive: PathBuf, reason: String },
    #[error(
        "{}: unpacks to more than {limit} bytes: refused\n  fix: make the dependency's artifacts smaller (artifacts:paths, artifacts:exclude)",
        archive.display()
    )]
    TooLarge { archive: PathBuf, limit: u64 },
    #[error(
        "artifact_format `raw` uploads exactly one file; {count} matched\n  fix: name one file in this report's path"
    )]
    RawNeedsOneFile { count: usize },
    #[error(
        "artifact_format `{0}` is not one wharf makes (zip, gzip, raw)\n  fix: use a report type GitLab sends as zip or gzip, or run the job on gitlab-runner"
    )]
    UnknownFormat(String),
}

/// An I/O error while `action` (opening, reading, writing...) the file at `path`.
pub fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> ArchiveError + 'p {
    move |source| ArchiveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `artifact_format` of a payload's `artifacts` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `zip` (and no format: gitlab-runner's default, `ArtifactFormatDefault`).
    Zip,
    /// `gzip`: each file a gzip member named after it (reports: junit, dotenv...).
    Gzip,
    /// `raw`: the one file as it is.
    Raw,
}

impl ArchiveFormat {
    pub fn parse(format: Option<&str>) -> Result<ArchiveFormat, ArchiveError> {
        match format.unwrap_or("") {
            "" | "zip" => Ok(ArchiveFormat::Zip),
            "gzip" => Ok(ArchiveFormat::Gzip),
            "raw" => Ok(ArchiveFormat::Raw),
            other => Err(ArchiveError::UnknownFormat(other.to_string())),
        }
    }

    /// The name GitLab gets in the multipart `file` part: the base name of `artifacts:name`
    /// (`default` when it has none) with the format's extension, as gitlab-runner names it
    /// (`artifactFilename`).
    pub fn file_name(self, name: &str) -> String {
        let base = Path::new(name)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .filter(|b| !b.is_empty() && b != ".")
            .unwrap_or_else(|| "default".to_string());
        match self {
            ArchiveFormat::Zip => format!("{base}.zip"),
            ArchiveFormat::Gzip => format!("{base}.gz"),
            ArchiveFormat::Raw => base,
        }
    }

    /// The value of `artifact_format` sent to GitLab.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Zip => "zip",
            ArchiveFormat::Gzip => "gzip",
            ArchiveFormat::Raw => "raw",
        }
    }
}

/// Every file, link and folder `entries` (relative to `root`) stand for, folders walked (links
/// listed, never followed), parents first, without duplicates.
fn expand_entries(
    root: &Root,
    entries: &[PathBuf],
) -> Result<Vec<(PathBuf, FileKind)>, ArchiveError> {
    let mut all = Vec::new();
    for entry in entries {
        let kind = FileKind::from(root.metadata(entry)?.file_type());
        all.push((entry.clone(), kind));
        if kind == FileKind::Dir {
            all.extend(root.walk(entry)?);
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    Ok(all)
}

/// Write the archive of `entries` (files, links, folders relative to `root`, read through it:
/// nothing outside the folder) to `out`, in `format`. The number of files archived.
pub fn write_archive(
    format: ArchiveFormat,
    root: &Root,
    entries: &[PathBuf],
    out: &mut std::fs::File,
    out_path: &Path,
) -> Result<usize, ArchiveError> {
    let all = expand_entries(root, entries)?;
    match format {
        ArchiveFormat::Zip => write_zip(root, &all, out, out_path),
        ArchiveFormat::Gzip => write_gzip(root, &all, out, out_path),
        ArchiveFormat::Raw => {
            let files: Vec<&PathBuf> = all
                .iter()
                .filter(|(_, kind)| *kind == FileKind::File)
                .map(|(path, _)| path)
                .collect();
            let [file] = files.as_slice() else {
                return Err(ArchiveError::RawNeedsOneFile { count: files.len() });
            };
            io::copy(&mut root.open_read(file)?, out).map_err(io_error("writing", out_path))?;
            Ok(1)
        }
    }
}

/// The tar of `entries` (files, links, folders relative to `root`, read through it) written
/// to `out`, as gitlab-runner's `tarzstd` cache archiver writes its tar before compressing it:
/// paths relative to `root`, links as links, permission bits and modification times; FIFOs,
/// sockets and devices skipped. The number of files archived.
pub fn write_tar(
    root: &Root,
    entries: &[PathBuf],
    out: &mut impl Write,
    out_path: &Path,
) -> Result<usize, ArchiveError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut tar = tar::Builder::new(out);
    let mut files = 0;
    for (path, kind) in expand_entries(root, entries)? {
        let meta = root.metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.permissions().mode() & 0o777);
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        header.set_mtime(modified.map_or(0, |d| d.as_secs()));
        header.set_size(0);
        match kind {
            FileKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, &path, io::empty())
            }
            FileKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                let target = root.read_link(&path)?;
                tar.append_link(&mut header, &path, target)
            }
            FileKind::File => {
                let file = root.open_read(&path)?;
                let size = file.metadata().map_err(io_error("reading", &path))?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                files += 1;
                // The tar writer copies what it is given whatever the header says: no more
                // than the size written in it.
                tar.append_data(&mut header, &path, file.take(size))
            }
            // As in a zip: no place in an archive.
            _ => continue,
        }
        .map_err(io_error("writing", out_path))?;
    }
    tar.finish().map_err(io_error("writing", out_path))?;
    Ok(files)
}

/// Zip names use `/` whatever the platform; folders end with one.
fn zip_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn write_zip(
    root: &Root,
    all: &[(PathBuf, FileKind)],
    out: &mut std::fs::File,
    out_path: &Path,
) -> Result<usize, ArchiveError> {
    use std::os::unix::fs::PermissionsExt as _;
    let zip_error = |e: zip::result::ZipError| ArchiveError::Zip {
        archive: out_path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut zip = zip::ZipWriter::new(out);
    let mut files = 0;
    for (path, kind) in all {
        let mode = root.metadata(path)?.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        match kind {
            FileKind::Dir => zip
                .add_directory(format!("{}/", zip_name(path)), options)
                .map_err(zip_error)?,
            FileKind::Symlink => {
                let target = root.read_link(path)?;
                zip.add_symlink(zip_name(path), target.to_string_lossy(), options)
                    .map_err(zip_error)?;
            }
            FileKind::File => {
                let mut file = root.open_read(path)?;
                let large = file.metadata().map(|m| m.len()).unwrap_or(0) >= u64::from(u32::MAX);
                zip.start_file(zip_name(path), options.large_file(large))
                    .map_err(zip_error)?;
                io::copy(&mut file, &mut zip).map_err(io_error("writing", out_path))?;
                files += 1;
            }
            // FIFOs, sockets and devices have no place in an archive (gitlab-runner skips
            // them too).
            _ => {}
        }
    }
    zip.finish().map_err(zip_error)?;
    Ok(files)
}

fn write_gzip(
    root: &Root,
    all: &[(PathBuf, FileKind)],
    out: &mut std::fs::File,
    out_path: &Path,
) -> Result<usize, ArchiveError> {
    let mut files = 0;
    for (path, _) in all.iter().filter(|(_, kind)| *kind == FileKind::File) {
        let mut member = flate2::GzBuilder::new()
            .filename(zip_name(path).into_bytes())
            .write(&mut *out, flate2::Compression::default());
        io::copy(&mut root.open_read(path)?, &mut member).map_err(io_error("writing", out_path))?;
        member.finish().map_err(io_error("writing", out_path))?;
        files += 1;
    }
    Ok(files)
}

/// What unpacking a dependency's archive did.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub files: usize,
    /// Entries not written, with why: a path leading outside the folder (`../`, absolute),
    /// through a link, or clashing with what an earlier entry made.
    pub refused: Vec<(String, String)>,
}

/// The entry `name` as a path inside the folder, or why it is not one.
fn entry_path(name: &[u8]) -> Result<PathBuf, &'static str> {
    use std::os::unix::ffi::OsStrExt as _;
    if name.contains(&0) {
        return Err("a NUL byte in its name");
    }
    let mut out = PathBuf::new();
    for component in Path::new(std::ffi::OsStr::from_bytes(name)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path"),
            Component::ParentDir => return Err("`..` in its path"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("an empty name");
    }
    Ok(out)
}

/// Unpack the zip at `archive` into `dest`, which should be an empty folder opened with
/// [`wharf_fs::Resolve::NoSymlinks`]: no entry is written through a link (a link the archive
/// made is a leaf, never a way in), none outside the folder. Entries that would are refused and
/// listed. More than `max_bytes` unpacked (whatever sizes the archive claims) fails it whole.
pub fn unpack_zip(archive: &Path, dest: &Root, max_bytes: u64) -> Result<Unpacked, ArchiveError> {
    let zip_error = |e: zip::result::ZipError| ArchiveError::Zip {
        archive: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(archive).map_err(io_error("opening", archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(zip_error)?;
    let mut unpacker = Unpacker::new(archive, dest, max_bytes);
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(zip_error)?;
        let name = entry.name_raw().to_vec();
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = if entry.is_dir() {
            EntryKind::Dir
        } else if entry.is_symlink() {
            // A zip keeps a link's target as its content.
            let mut target = Vec::new();
            (&mut entry)
                .take(4096)
                .read_to_end(&mut target)
                .map_err(io_error("reading", archive))?;
            EntryKind::Symlink(target)
        } else {
            EntryKind::File {
                declared: entry.size(),
            }
        };
        unpacker.entry(&name, kind, mode, &mut entry)?;
    }
    Ok(unpacker.unpacked)
}

/// Unpack the tar stream `tar` (read from `archive`, named in messages) into `dest`, with the
/// rules of [`unpack_zip`]: gitlab-runner's `tarzstd` cache archives, once decompressed.
/// Folders, files and symbolic links are unpacked, and a hard link to an earlier file of the
/// archive as a copy of it; devices and FIFOs are refused and listed (gitlab-runner's archiver
/// writes none).
pub fn unpack_tar(
    tar: impl Read,
    archive: &Path,
    dest: &Root,
    max_bytes: u64,
) -> Result<Unpacked, ArchiveError> {
    let tar_error = |e: io::Error| {
        if e.kind() == io::ErrorKind::FileTooLarge {
            return ArchiveError::TooLarge {
                archive: archive.to_path_buf(),
                limit: max_bytes,
            };
        }
        ArchiveError::Tar {
            archive: archive.to_path_buf(),
            reason: e.to_string(),
        }
    };
    // The tar stream itself is bounded too: the tar reader reads through the content of
    // entries it does not unpack, and a few KiB of zstd can decode to terabytes of it. Headers
    // and padding take at most 1 KiB per entry beside its content (16 GiB unpacked, the
    // runner's bound, leaves room for millions of entries).
    let (bounded, _for_good) = LimitedReader::new(
        tar,
        max_bytes.saturating_mul(2).saturating_add(1 << 20),
        io::ErrorKind::FileTooLarge,
        "the archive's stream is too long",
    );
    // And the tar reader holds a long name or a PAX extension whole in memory: between two
    // entries, it may read a few MiB of headers, no more.
    let (limited, limit) = LimitedReader::tar_headers(bounded);
    let mut tar = tar::Archive::new(limited);
    let mut unpacker = Unpacker::new(archive, dest, max_bytes);
    for entry in tar.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        limit.after_tar_entry(entry.raw_file_position(), entry.size());
        let name = entry.path_bytes().into_owned();
        let header = entry.header();
        let mode = header.mode().map_err(tar_error)?;
        let kind = match header.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File {
                declared: entry.size(),
            },
            tar::EntryType::Symlink => match entry.link_name_bytes() {
                Some(target) => EntryKind::Symlink(target.into_owned()),
                None => EntryKind::Refused("a link without a target"),
            },
            // Extended headers the tar reader already applied to the entries they describe.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            tar::EntryType::Link => match entry.link_name_bytes() {
                Some(target) => EntryKind::HardLink(target.into_owned()),
                None => EntryKind::Refused("a link without a target"),
            },
            _ => EntryKind::Refused("a device, FIFO or other special file"),
        };
        unpacker.entry(&name, kind, mode, &mut entry)?;
    }
    Ok(unpacker.unpacked)
}

/// What an archive's entry makes, as unpacking sees it.
enum EntryKind {
    Dir,
    /// `declared`: the size the archive claims (checked against the bytes actually read).
    File {
        declared: u64,
    },
    /// The link's target.
    Symlink(Vec<u8>),
    /// A second name of a file an earlier entry made (GNU tar writes them): unpacked as a
    /// copy of it, so it is bounded and confined like any file.
    HardLink(Vec<u8>),
    /// Never unpacked, with why.
    Refused(&'static str),
}

/// One archive being unpacked: the same confinement and size rules for every format.
struct Unpacker<'a> {
    archive: &'a Path,
    dest: &'a Root,
    max_bytes: u64,
    written: u64,
    unpacked: Unpacked,
}

impl<'a> Unpacker<'a> {
    fn new(archive: &'a Path, dest: &'a Root, max_bytes: u64) -> Self {
        Unpacker {
            archive,
            dest,
            max_bytes,
            written: 0,
            unpacked: Unpacked::default(),
        }
    }

    fn too_large(&self) -> ArchiveError {
        ArchiveError::TooLarge {
            archive: self.archive.to_path_buf(),
            limit: self.max_bytes,
        }
    }

    /// The entry `name` of `kind` (a file's bytes read from `content`) made in the folder, or
    /// listed as refused when it would leave it or write through a link. Only the permission
    /// bits of `mode` are kept.
    fn entry(
        &mut self,
        name: &[u8],
        kind: EntryKind,
        mode: u32,
        content: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let path = match (entry_path(name), &kind) {
            (Err(why), _) | (Ok(_), &EntryKind::Refused(why)) => {
                self.unpacked.refused.push((shown, why.to_string()));
                return Ok(());
            }
            (Ok(path), _) => path,
        };
        let dest = self.dest;
        let made = match kind {
            EntryKind::Refused(_) => Ok(()),
            EntryKind::Dir => dest
                .create_dir_all(&path, 0o755)
                .map_err(ArchiveError::from),
            EntryKind::Symlink(target) => {
                use std::os::unix::ffi::OsStrExt as _;
                self.parent_made(&path)
                    .and_then(|()| replace_entry(dest, &path))
                    .and_then(|()| dest.symlink(std::ffi::OsStr::from_bytes(&target), &path))
                    .map_err(ArchiveError::from)
            }
            EntryKind::HardLink(target) => match entry_path(&target) {
                Err(why) => {
                    self.unpacked
                        .refused
                        .push((shown, format!("a hard link to {why}")));
                    return Ok(());
                }
                Ok(target) => match dest.open_read(&target) {
                    Err(e) => Err(e.into()),
                    Ok(mut earlier) => self.file(&path, mode, 0, &mut earlier),
                },
            },
            EntryKind::File { declared } => self.file(&path, mode, declared, content),
        };
        match made {
            Err(ArchiveError::Confined(e)) => self.unpacked.refused.push((shown, e.to_string())),
            other => other?,
        }
        Ok(())
    }

    /// The file `path` made from `content`, which the archive says is `declared` bytes long
    /// (whatever it says, no more than the bound is written).
    fn file(
        &mut self,
        path: &Path,
        mode: u32,
        declared: u64,
        content: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        let room = self.max_bytes.saturating_sub(self.written);
        if declared > room {
            return Err(self.too_large());
        }
        self.parent_made(path)?;
        replace_entry(self.dest, path)?;
        let mut out = self.dest.create_new(path, (mode & 0o777) | 0o600)?;
        // One byte past the room tells a lying size from a fitting one.
        let copied = match io::copy(&mut content.take(room + 1), &mut out) {
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Err(self.too_large()),
            copied => copied.map_err(io_error("unpacking", self.archive))?,
        };
        if copied > room {
            return Err(self.too_large());
        }
        self.written += copied;
        self.unpacked.files += 1;
        Ok(())
    }

    /// The folders above `path`.
    fn parent_made(&self, path: &Path) -> Result<(), wharf_fs::Error> {
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => self.dest.create_dir_all(parent, 0o755),
            None => Ok(()),
        }
    }
}

/// A file or link an earlier entry made at `path` is replaced (a later entry wins, as when
/// gitlab-runner extracts); a folder stays, and the entry is refused.
fn replace_entry(dest: &Root, path: &Path) -> Result<(), wharf_fs::Error> {
    match dest.try_metadata(path)? {
        Some(meta) if !meta.is_dir() => dest.remove_file(path),
        _ => Ok(()),
    }
}

/// What one upload sends besides the archive.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactUpload<'a> {
    /// The multipart `file` part's file name ([`ArchiveFormat::file_name`]).
    pub file_name: &'a str,
    pub format: ArchiveFormat,
    /// `archive`, `junit`, `dotenv`...
    pub artifact_type: &'a str,
    pub expire_in: Option<&'a str>,
}

/// The artifact calls of one job, owned (the job engine holds it while the job runs).
#[derive(Clone)]
pub struct ArtifactsClient {
    http: reqwest::Client,
    /// For downloads: redirects are followed by hand, so the job token never leaves GitLab.
    no_redirects: reqwest::Client,
    api: Url,
}

impl std::fmt::Debug for ArtifactsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactsClient")
            .field("api", &self.api.as_str())
            .finish()
    }
}

/// Redirects a download follows at most (object storage answers with one).
const MAX_REDIRECTS: usize = 10;

impl RunnerClient {
    /// The artifact calls, for jobs of this runner.
    pub fn artifacts_client(&self) -> Result<ArtifactsClient, RunnerError> {
        let no_redirects = reqwest::Client::builder()
            .user_agent(concat!("wharf-runner/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RunnerError::Client(e.to_string()))?;
        Ok(ArtifactsClient {
            http: self.http.clone(),
            no_redirects,
            api: self.api.clone(),
        })
    }
}

impl ArtifactsClient {
    fn endpoint(&self, path: &str) -> Url {
        self.api.join(path).unwrap_or_else(|_| self.api.clone())
    }

    /// `POST jobs/:id/artifacts`: the archive at `archive`, streamed as the multipart part
    /// `file`. `artifact_format`, `artifact_type` and `expire_in` go in the query, as
    /// gitlab-runner sends them (`UploadRawArtifacts`); the first two also as form fields,
    /// which GitLab's API reads the same (Grape merges both) and Collabora's mock requires.
    ///
    /// A 307 names where GitLab now takes uploads: the upload is sent again once to that
    /// scheme, host and port (gitlab-runner's `handleRedirect`: it keeps the API path).
    pub async fn upload(
        &self,
        job: &JobPayload,
        archive: &Path,
        upload: ArtifactUpload<'_>,
    ) -> Result<(), RunnerError> {
        let Some(moved) = self.upload_to(&self.api, job, archive, upload).await? else {
            return Ok(());
        };
        let mut api = self.api.clone();
        let _ = api.set_scheme(moved.scheme());
        let _ = api.set_host(moved.host_str());
        let _ = api.set_port(moved.port());
        match self.upload_to(&api, job, archive, upload).await? {
            None => Ok(()),
            Some(again) => Err(RunnerError::Refused {
                method: "POST",
                url: redacted(&again),
                reason: "redirected twice (307): not followed further".to_string(),
            }),
        }
    }

    /// One upload to the API at `api`: `Some(location)` when GitLab answers 307.
    async fn upload_to(
        &self,
        api: &Url,
        job: &JobPayload,
        archive: &Path,
        upload: ArtifactUpload<'_>,
    ) -> Result<Option<Url>, RunnerError> {
        let mut url = api
            .join(&format!("jobs/{}/artifacts", job.id))
            .unwrap_or_else(|_| api.clone());
        {
            let mut query = url.query_pairs_mut();
            if let Some(expire_in) = upload.expire_in.filter(|e| !e.is_empty()) {
                query.append_pair("expire_in", expire_in);
            }
            query.append_pair("artifact_format", upload.format.as_str());
            query.append_pair("artifact_type", upload.artifact_type);
        }
        let boundary = format!("wharf-{}", request_id());
        let mut head = String::new();
        for (name, value) in [
            ("artifact_format", upload.format.as_str()),
            ("artifact_type", upload.artifact_type),
        ] {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            quote_escaped(upload.file_name)
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| RunnerError::Unreachable {
                method: "POST",
                url: url.to_string(),
                reason: format!("reading {}: {e}", archive.display()),
            })?;
        use futures_util::StreamExt as _;
        let body = futures_util::stream::once(async move { Ok(bytes_of(head)) })
            .chain(tokio_util::io::ReaderStream::new(file))
            .chain(futures_util::stream::once(
                async move { Ok(bytes_of(tail)) },
            ));
        let answer = self
            .http
            .post(url.clone())
            .header(job.token.header_name(), job.token.secret())
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("X-Request-Id", request_id())
            // Large archives take long: no overall timeout, only the connection's.
            .timeout(Duration::from_secs(24 * 3600))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| RunnerError::Unreachable {
                method: "POST",
                url: url.to_string(),
                reason: error_chain(&e),
            })?;
        match answer.status().as_u16() {
            201 => Ok(None),
            307 => match answer
                .headers()
                .get("Location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            {
                Some(location) => Ok(Some(location)),
                None => Err(status_error("POST", &url, answer, "").await),
            },
            413 => Err(status_error(
                "POST",
                &url,
                answer,
                "the archive is larger than GitLab's maximum artifacts size: upload fewer files (artifacts:paths, artifacts:exclude), or raise the limit (Admin > Settings > CI/CD > Maximum artifacts size, or the project's or group's)",
            )
            .await),
            403 => Err(status_error(
                "POST",
                &url,
                answer,
                "GitLab refused the job token: the job is no longer running there (canceled, or erased)",
            )
            .await),
            _ => Err(status_error("POST", &url, answer, "").await),
        }
    }

    /// `GET jobs/:id/artifacts` of `dependency` with its own token, into the file `into` (at
    /// most `max_bytes`). Redirects (object storage) are followed; the token goes only to
    /// GitLab's own scheme, host and port. The bytes written.
    pub async fn download(
        &self,
        dependency: &Dependency,
        into: &Path,
        max_bytes: u64,
    ) -> Result<u64, RunnerError> {
        let first = self.endpoint(&format!("jobs/{}/artifacts", dependency.id));
        let mut url = first.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .no_redirects
                .get(url.clone())
                .header("X-Request-Id", request_id());
            if url.origin() == self.api.origin() {
                request = request.header(dependency.token.header_name(), dependency.token.secret());
            }
            let mut answer = request.send().await.map_err(|e| RunnerError::Unreachable {
                method: "GET",
                url: redacted(&url),
                reason: error_chain(&e),
            })?;
            let status = answer.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let location = answer
                    .headers()
                    .get("Location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                match location {
                    Some(next) => {
                        url = next;
                        continue;
                    }
                    None => {
                        return Err(status_error("GET", &first, answer, "").await);
                    }
                }
            }
            match status {
                200 => {}
                403 => {
                    return Err(status_error("GET", &first, answer, "GitLab refused the dependency's job token: its artifacts are not this job's to take (CI/CD job token scope), or the dependency was retried").await);
                }
                404 => {
                    return Err(status_error("GET", &first, answer, "the dependency's artifacts are gone (expired or erased): run that job again, or keep its artifacts longer (artifacts:expire_in)").await);
                }
                _ => return Err(status_error("GET", &first, answer, "").await),
            }
            let io_failure = |e: io::Error| RunnerError::Unreachable {
                method: "GET",
                url: first.to_string(),
                reason: format!("writing {}: {e}", into.display()),
            };
            let mut out = std::fs::File::create(into).map_err(io_failure)?;
            let mut written: u64 = 0;
            while let Some(chunk) = answer.chunk().await.map_err(|e| RunnerError::Unreachable {
                method: "GET",
                url: redacted(&url),
                reason: error_chain(&e),
            })? {
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(RunnerError::Refused {
                        method: "GET",
                        url: first.to_string(),
                        reason: format!("the archive is larger than {max_bytes} bytes: refused"),
                    });
                }
                out.write_all(&chunk).map_err(io_failure)?;
            }
            out.flush().map_err(io_failure)?;
            return Ok(written);
        }
        Err(RunnerError::Unreachable {
            method: "GET",
            url: first.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// An object storage URL without its query: presigned URLs carry their credentials there.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.query().is_some() {
        shown.set_query(Some("<redacted>"));
    }
    shown.to_string()
}

fn bytes_of(text: String) -> bytes::Bytes {
    bytes::Bytes::from(text.into_bytes())
}

/// A multipart parameter value in quotes, escaped as Go's `mime/multipart` does.
fn quote_escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_fs::Resolve;

    /// A zip with `entries`: (name, Some(contents)) for a file, (name, None) for a folder;
    /// names written exactly as given (a hostile archive's are not sanitised).
    fn zip_of(
        entries: &[(&str, Option<&[u8]>)],
        links: &[(&str, &str)],
    ) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, target) in links {
            zip.add_symlink(*name, *target, options).unwrap();
        }
        for (name, contents) in entries {
            match contents {
                Some(bytes) => {
                    zip.start_file(*name, options).unwrap();
                    zip.write_all(bytes).unwrap();
                }
                None => zip.add_directory(*name, options).unwrap(),
            }
        }
        zip.finish().unwrap();
        file
    }

    fn unpack(
        archive: &Path,
        max_bytes: u64,
    ) -> (tempfile::TempDir, Result<Unpacked, ArchiveError>) {
        let dest = tempfile::tempdir().unwrap();
        let root = Root::open(dest.path(), Resolve::NoSymlinks).unwrap();
        let result = unpack_zip(archive, &root, max_bytes);
        (dest, result)
    }

    #[test]
    fn a_zip_made_from_a_folder_unpacks_to_the_same_files_links_and_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("out/sub")).unwrap();
        std::fs::write(src.path().join("out/a.txt"), "a").unwrap();
        std::fs::write(src.path().join("out/sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.path().join("out/sub/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a.txt", src.path().join("out/link")).unwrap();
        let root = Root::open(src.path(), Resolve::Beneath).unwrap();
        let archive = tempfile::NamedTempFile::new().unwrap();
        let files = write_archive(
            ArchiveFormat::Zip,
            &root,
            &[PathBuf::from("out")],
            &mut archive.reopen().unwrap(),
            archive.path(),
        )
        .unwrap();
        assert_eq!(files, 2);
        let (dest, unpacked) = unpack(archive.path(), 1 << 20);
        let unpacked = unpacked.unwrap();
        assert!(unpacked.refused.is_empty(), "{:?}", unpacked.refused);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("out/a.txt")).unwrap(),
            "a"
        );
        let mode = std::fs::metadata(dest.path().join("out/sub/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dest.path().join("out/link")).unwrap(),
            Path::new("a.txt")
        );
    }

    #[test]
    fn entries_leading_outside_are_refused_and_nothing_is_written_outside() {
        let outside = tempfile::tempdir().unwrap();
        let escape = outside.path().join("escaped.txt");
        let absolute = escape.to_string_lossy().into_owned();
        let archive = zip_of(
            &[
                ("../escaped.txt", Some(b"x")),
                ("a/../../escaped.txt", Some(b"x")),
                (absolute.as_str(), Some(b"x")),
                // Through the link the archive made just before: refused, not followed.
                ("evil/escaped.txt", Some(b"x")),
                ("good.txt", Some(b"fine")),
            ],
            &[("evil", &outside.path().to_string_lossy())],
        );
        let (dest, unpacked) = unpack(archive.path(), 1 << 20);
        let unpacked = unpacked.unwrap();
        assert!(!escape.exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(unpacked.files, 1);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("good.txt")).unwrap(),
            "fine"
        );
        let refused: Vec<&str> = unpacked.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            refused,
            [
                "../escaped.txt",
                "a/../../escaped.txt",
                absolute.as_str(),
                "evil/escaped.txt"
            ],
            "{:?}",
            unpacked.refused
        );
        // The link itself is kept as a link (a leaf), as gitlab-runner keeps links.
        assert!(
            dest.path()
                .join("evil")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn an_archive_unpacking_past_the_limit_fails_whole() {
        let big = vec![0u8; 300_000];
        let archive = zip_of(&[("one.bin", Some(&big)), ("two.bin", Some(&big))], &[]);
        let (_dest, unpacked) = unpack(archive.path(), 500_000);
        let error = unpacked.unwrap_err();
        assert!(
            matches!(error, ArchiveError::TooLarge { limit: 500_000, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("fix:"), "{error}");
    }

    #[test]
    fn gzip_reports_are_one_member_per_file_named_after_it_and_raw_takes_one_file() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("junit.xml"), "<testsuites/>").unwrap();
        std::fs::write(src.path().join("other.xml"), "<x/>").unwrap();
        let root = Root::open(src.path(), Resolve::Beneath).unwrap();
        let entries = [PathBuf::from("junit.xml"), PathBuf::from("other.xml")];
        let archive = tempfile::NamedTempFile::new().unwrap();
        let files = write_archive(
            ArchiveFormat::Gzip,
            &root,
            &entries,
            &mut archive.reopen().unwrap(),
            archive.path(),
        )
        .unwrap();
        assert_eq!(files, 2);
        let bytes = std::fs::read(archive.path()).unwrap();
        let mut rest = &bytes[..];
        let mut members = Vec::new();
        while !rest.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(&mut rest);
            let mut contents = String::new();
            decoder.read_to_string(&mut contents).unwrap();
            let name = decoder
                .header()
                .and_then(|h| h.filename())
                .unwrap()
                .to_vec();
            members.push((String::from_utf8(name).unwrap(), contents));
        }
        assert_eq!(
            members,
            [
                ("junit.xml".to_string(), "<testsuites/>".to_string()),
                ("other.xml".to_string(), "<x/>".to_string())
            ]
        );
        let raw = write_archive(
            ArchiveFormat::Raw,
            &root,
            &entries,
            &mut archive.reopen().unwrap(),
            archive.path(),
        );
        assert!(matches!(
            raw,
            Err(ArchiveError::RawNeedsOneFile { count: 2 })
        ));
    }

    #[test]
    fn upload_file_names_follow_gitlab_runner() {
        assert_eq!(ArchiveFormat::Zip.file_name("artifacts"), "artifacts.zip");
        assert_eq!(ArchiveFormat::Zip.file_name(""), "default.zip");
        assert_eq!(ArchiveFormat::Gzip.file_name("junit"), "junit.gz");
        assert_eq!(ArchiveFormat::Zip.file_name("a/b/build-1"), "build-1.zip");
        assert_eq!(ArchiveFormat::parse(None).unwrap(), ArchiveFormat::Zip);
        assert!(ArchiveFormat::parse(Some("tar.zst")).is_err());
    }
}

//! The depot: a directory of content-addressed blobs and entries that names no
//! absolute path, so it can be copied anywhere and still hit.
//!
//! ```text
//! <depot>/
//!   DEPOT.toml                       format version, defaults
//!   CACHEDIR.TAG                     so backup tools skip it
//!   objects-v1/ab/<blake3-hex>       blobs, zstd or raw (loose)
//!   objects-v1/packs/pack-<id>.pack  blobs in packs, and their indexes (`.idx`)
//!   entries-v2/ab/<key-hex>.toml     one entry per key
//!   variants-v1/ab/<key-hex>.toml    path sets seen per base key (depfiles)
//!   projects-v2/<name>/<target>.toml last key built or restored per target
//!   usage/  locks/  tmp/  quarantine/
//! ```
//!
//! Entries, project records and `DEPOT.toml` end with a checksum of their
//! own bytes, usage log lines each carry one ([`checksum`]). Format 1 had
//! none: a format 1 depot is upgraded when opened for writing (`DEPOT.toml`
//! rewritten); its `entries-v1/` and `projects-v1/` are never read again,
//! and `gc` and `clear --all` remove them ([`LEGACY_DIRS`]).
//!
//! [`Depot`] is the only handle other modules use; they never build depot
//! paths themselves ([`layout`] spells them). Every write goes through the
//! private `write` module; blobs enter through [`Depot::ingest_blob`] (loose)
//! or [`packs::PackWriter`] (packed), and are read through [`Depot::open_blob`].

pub mod blobs;
pub mod checksum;
pub mod entries;
pub mod ingest;
pub mod layout;
pub mod locks;
pub mod packs;
pub mod records;
pub mod usage;
pub mod variants;
mod write;

pub(crate) use write::sync_dir;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The depot layout version of a depot without packs, which this build
/// creates and archives carry. 2: self-checking records, in `entries-v2/`
/// and `projects-v2/`.
pub const DEPOT_FORMAT: u32 = 2;
/// The newest layout version this build reads, and the one the first pack
/// written sets: 3, blobs may also be in `objects-v1/packs/`. A depot stays
/// at 2 until then, so an older relocache keeps using it.
pub const PACKED_FORMAT: u32 = 3;
use layout::{CACHEDIR_TAG_FILE, DEPOT_TOML};
pub use layout::{LEGACY_DIRS, PROJECTS_DIR};
pub(crate) const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a relocache depot (a build cache).\n# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Errors from depot operations. Each names the path and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DepotError {
    /// An I/O operation failed.
    #[error("could not {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done ("write blob", "read entry", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// One of the depot's own directories is a symbolic link.
    #[error("`{}` is a symbolic link: relocache never follows one of a depot's own directories (a restored cache could point it anywhere, and gc and clear delete there)\n  help: put the real directory in its place (remove the link, then `mv` the directory it points to there), or remove the link and let the next build recreate the directory empty", .0.display())]
    SymlinkedDir(PathBuf),
    /// The depot path names something that is not a directory.
    #[error("`{}` is not a directory, so it cannot be a depot\n  help: point --depot/RELOCACHE_DEPOT at a directory (a new or empty one makes a new depot)", .0.display())]
    NotADirectory(PathBuf),
    /// `DEPOT.toml` is not a file relocache wrote.
    #[error("`{}` is damaged: {message}\n  help: it holds only the layout version and settings; if this is a relocache depot, rewrite it with `echo 'format = 1' > {}` (the next build upgrades and seals it; re-add any max_size or usage_interval), then run `relocache verify --integrity`", .path.display(), .path.display())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `DEPOT.toml` fails its checksum: damaged, or edited by hand.
    #[error("`{}` is damaged: {why}\n  help: if you edited it by hand and it says what you want, set its last line to `checksum = \"{actual}\"`; else rewrite it with `echo 'format = 1' > {}` (the next build upgrades and seals it; re-add any max_size or usage_interval)", .path.display(), .path.display())]
    ConfigChecksum {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: checksum::Unsealed,
        /// The checksum of the text before the checksum line as it is now.
        actual: String,
    },
    /// A non-empty directory without `DEPOT.toml` was named as a depot.
    #[error("`{}` is not a relocache depot (no DEPOT.toml) and is not empty\n  help: point --depot/RELOCACHE_DEPOT at an empty or new directory", .0.display())]
    NotADepot(PathBuf),
    /// The depot was written by a newer relocache.
    #[error("`{}` has depot format {found}, newer than this relocache supports ({PACKED_FORMAT})\n  help: upgrade relocache, or use another depot", .path.display())]
    NewerFormat {
        /// The depot.
        path: PathBuf,
        /// Its format number.
        found: u32,
    },
    /// A stored file failed to parse.
    #[error("`{}` is damaged: {message}\n  help: run `relocache verify` and `relocache clear` the entry", .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A blob's content does not match its name; it was moved to quarantine.
    #[error("blob {digest} is corrupt (content does not match its name); moved to quarantine/")]
    Corrupt {
        /// The blob's name.
        digest: crate::digest::Digest,
    },
    /// Content offered under a blob's name hashes to another digest; it
    /// was not stored.
    #[error("blob {digest} was not stored: its content hashes to {actual}")]
    Mismatch {
        /// The name it was offered under.
        digest: crate::digest::Digest,
        /// What its content hashes to.
        actual: crate::digest::Digest,
    },
    /// A packed blob's content does not match its name; it is skipped from
    /// now on, and the pack (whose other blobs are sound) left as it is.
    #[error("blob {digest} in `{}` is corrupt (content does not match its name); skipped, the pack left as it is\n  help: run `relocache verify --integrity`; the targets that need it rebuild and store it again", .pack.display())]
    CorruptPacked {
        /// The blob's name.
        digest: crate::digest::Digest,
        /// The pack holding it.
        pack: PathBuf,
    },
    /// A blob an entry needs is absent.
    #[error("blob {0} is missing from the depot")]
    MissingBlob(crate::digest::Digest),
    /// No depot location could be determined.
    #[error("no depot location: neither --depot, RELOCACHE_DEPOT, RELOCACHE_DEPOT_PATH, XDG_CACHE_HOME nor HOME is set\n  help: pass --depot DIR")]
    NoLocation,
}

impl DepotError {
    /// The underlying OS error text, or the whole message.
    pub fn source_text(&self) -> String {
        match self {
            DepotError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> DepotError {
        let path = path.to_path_buf();
        move |source| DepotError::Io {
            action,
            path,
            source,
        }
    }
}

/// `DEPOT.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DepotConfig {
    /// Layout version.
    pub format: u32,
    /// Default size bound for `gc` and the automatic gc after `build` (e.g. `"10G"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    /// How often one key's use is logged at most (e.g. `"1d"`, `"0s"` for every use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_interval: Option<String>,
}

/// An open depot.
#[derive(Debug, Clone)]
pub struct Depot {
    root: PathBuf,
    config: DepotConfig,
    /// Shared by clones: the packs are loaded once per process.
    pack_state: std::sync::Arc<packs::PackState>,
}

impl Depot {
    /// Opens the depot at `root`, creating it when the directory is missing or empty.
    pub fn open_or_create(root: &Path) -> Result<Depot, DepotError> {
        let root = std::path::absolute(root).map_err(DepotError::io("resolve", root))?;
        if root.exists() && !root.is_dir() {
            return Err(DepotError::NotADirectory(root));
        }
        if !root.join(DEPOT_TOML).exists() {
            let empty = match std::fs::read_dir(&root) {
                Ok(mut rd) => rd.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(DepotError::io("read", &root)(e)),
            };
            if !empty {
                return Err(DepotError::NotADepot(root));
            }
            Depot::create(&root)?;
        }
        let mut depot = Depot::open_existing(&root)?;
        if depot.config.format < DEPOT_FORMAT {
            depot.upgrade()?;
        }
        // A copied or restored depot may lack empty directories (git, some CI
        // caches). A read-only depot stays readable; writes report their own errors.
        let _ = depot.ensure_layout();
        Ok(depot)
    }

    /// Creates a depot at `root` atomically: the layout is built in a sibling
    /// directory and renamed into place, so a concurrent process sees either
    /// nothing or a complete depot. Losing that race to another process is fine.
    fn create(root: &Path) -> Result<(), DepotError> {
        let parent = root.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(DepotError::io("create", parent))?;
        let staging = tempfile::Builder::new()
            .prefix(&crate::tempname::temp_name("depot"))
            .rand_bytes(0)
            .tempdir_in(parent)
            .map_err(DepotError::io("create a depot in", parent))?;
        let config = DepotConfig {
            format: DEPOT_FORMAT,
            ..DepotConfig::default()
        };
        let fresh = Depot {
            root: staging.path().to_path_buf(),
            config: config.clone(),
            pack_state: Default::default(),
        };
        fresh.ensure_layout()?;
        let text = render_config(&config);
        write::write_bytes(&fresh, &staging.path().join(DEPOT_TOML), text.as_bytes())?;
        write::write_bytes(
            &fresh,
            &staging.path().join(CACHEDIR_TAG_FILE),
            CACHEDIR_TAG.as_bytes(),
        )?;
        std::fs::set_permissions(
            staging.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(DepotError::io("create depot", root))?;
        let built = staging.keep();
        match std::fs::rename(&built, root) {
            Ok(()) => {
                write::sync_dir(parent);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&built);
                if root.join(DEPOT_TOML).exists() {
                    Ok(()) // another process created it first
                } else {
                    Err(DepotError::io("create depot", root)(e))
                }
            }
        }
    }

    /// Opens an existing depot without creating or changing anything.
    pub fn open_existing(root: &Path) -> Result<Depot, DepotError> {
        let root = std::path::absolute(root).map_err(DepotError::io("resolve", root))?;
        if root.exists() && !root.is_dir() {
            return Err(DepotError::NotADirectory(root));
        }
        let conf_path = root.join(DEPOT_TOML);
        if conf_path.exists() && !conf_path.is_file() {
            return Err(DepotError::BadConfig {
                path: conf_path,
                message: "it is not a regular file".into(),
            });
        }
        let text = read_regular_text(&conf_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DepotError::NotADepot(root.clone())
            } else {
                DepotError::io("read", &conf_path)(e)
            }
        })?;
        let config = parse_config(&text, &conf_path)?;
        if config.format > PACKED_FORMAT {
            return Err(DepotError::NewerFormat {
                path: root,
                found: config.format,
            });
        }
        // Writes, gc and clear go through these: never through a link to
        // somewhere else.
        for dir in [
            layout::OBJECTS_DIR,
            layout::PACKS_DIR,
            layout::ENTRIES_DIR,
            layout::VARIANTS_DIR,
            layout::SIGNATURES_DIR,
            layout::PROJECTS_DIR,
            layout::USAGE_DIR,
            layout::LOCKS_DIR,
            layout::TMP_DIR,
            layout::QUARANTINE_DIR,
        ] {
            let p = root.join(dir);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(DepotError::SymlinkedDir(p));
            }
        }
        Ok(Depot {
            root,
            config,
            pack_state: Default::default(),
        })
    }

    /// Upgrades a format 1 depot: `DEPOT.toml` is rewritten, sealed, at
    /// the current format with the same settings. Entries and records of
    /// format 1 stay where they are and are never read (every target misses
    /// once); blobs are shared. A read-only depot stays as it is.
    fn upgrade(&mut self) -> Result<(), DepotError> {
        let config = DepotConfig {
            format: DEPOT_FORMAT,
            ..self.config.clone()
        };
        let path = self.config_path();
        if write::write_bytes(self, &path, render_config(&config).as_bytes()).is_ok() {
            self.config = config;
        }
        Ok(())
    }

    /// Makes sure `DEPOT.toml` says [`PACKED_FORMAT`] before a pack is
    /// published, so an older relocache stops at this depot rather than
    /// miss every packed blob. Rewritten (sealed, settings kept) only when
    /// lower; the file is read again, as another process may have bumped it.
    pub(crate) fn require_packed_format(&self) -> Result<(), DepotError> {
        let path = self.config_path();
        let text = read_regular_text(&path).map_err(DepotError::io("read", &path))?;
        let config = parse_config(&text, &path)?;
        if config.format >= PACKED_FORMAT {
            return Ok(());
        }
        let config = DepotConfig {
            format: PACKED_FORMAT,
            ..config
        };
        write::write_bytes(self, &path, render_config(&config).as_bytes())
    }

    /// The directories of format 1 ([`LEGACY_DIRS`]) still in the depot:
    /// nothing reads them, so a command reporting on the depot says so
    /// rather than let them pass for an empty depot. Read-only.
    pub fn legacy_dirs(&self) -> Vec<&'static str> {
        LEGACY_DIRS
            .into_iter()
            .filter(|d| self.root.join(d).is_dir())
            .collect()
    }

    /// Removes the directories of format 1 ([`LEGACY_DIRS`]) and its usage
    /// logs, and returns the directories that were there (`usage/*-v1*`
    /// for the logs). Nothing reads them.
    pub fn remove_legacy(&self) -> Result<Vec<&'static str>, DepotError> {
        let mut removed = Vec::new();
        if usage::remove_legacy(self)? > 0 {
            removed.push("usage/*-v1*");
        }
        for d in LEGACY_DIRS {
            let p = self.root.join(d);
            match std::fs::remove_dir_all(&p) {
                Ok(()) => removed.push(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DepotError::io("remove the old-format directory", &p)(e)),
            }
        }
        Ok(removed)
    }

    fn ensure_layout(&self) -> Result<(), DepotError> {
        for d in layout::DIRS {
            let p = self.root.join(d);
            std::fs::create_dir_all(&p).map_err(DepotError::io("create", &p))?;
        }
        Ok(())
    }

    /// The depot directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DEPOT.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(DEPOT_TOML)
    }

    /// Writes `bytes` to `path` in this depot atomically, without fsync: for
    /// hints such as the stat memo, whose loss costs only a re-hash.
    pub(crate) fn write_hint(&self, path: &Path, bytes: &[u8]) -> Result<(), DepotError> {
        write::write_hint(self, path, bytes)
    }

    /// Where the damaged files are moved aside.
    pub(crate) fn quarantine_dir(&self) -> PathBuf {
        self.root.join(layout::QUARANTINE_DIR)
    }

    /// Where a damaged file named `name` is moved: `quarantine/<name>.<ns
    /// since the epoch>`, the directory created (best effort).
    pub(crate) fn quarantine_path(&self, name: &str) -> PathBuf {
        let dir = self.quarantine_dir();
        let _ = std::fs::create_dir_all(&dir);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_nanos())
            .unwrap_or(0);
        dir.join(format!("{name}.{stamp}"))
    }

    /// Puts a copy of the depot file at `path` in `quarantine/` (see
    /// [`Depot::quarantine_path`]), leaving `path` where it is: a hard link,
    /// else a durable copy through the write door. For a file the caller
    /// is about to replace or remove, whose bytes must not be lost.
    pub(crate) fn keep_in_quarantine(&self, path: &Path) -> Result<PathBuf, DepotError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = self.quarantine_path(&name);
        if std::fs::hard_link(path, &to).is_ok() {
            return Ok(to);
        }
        let mut staged = write::staging(self)?;
        let mut from = std::fs::File::open(path).map_err(DepotError::io("read", path))?;
        std::io::copy(&mut from, staged.as_file_mut())
            .map_err(DepotError::io("copy to quarantine", path))?;
        write::persist(staged, &to)?;
        Ok(to)
    }

    /// `DEPOT.toml` settings.
    pub fn config(&self) -> &DepotConfig {
        &self.config
    }

    /// Whether new files can be written (creates and drops a staging file).
    pub fn probe_writable(&self) -> Result<(), DepotError> {
        write::staging(self).map(drop)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join(layout::TMP_DIR)
    }

    /// Every entry key in the depot, sorted. Files that are not named like an
    /// entry are skipped (staging leftovers); use `verify` to find them.
    pub fn list_entries(&self) -> Result<Vec<crate::digest::Key>, DepotError> {
        let mut keys = self.list_sharded(layout::ENTRIES_DIR, layout::ENTRY_SUFFIX)?;
        keys.sort();
        Ok(keys.into_iter().map(crate::digest::Key).collect())
    }

    /// Every loose blob digest in the depot, sorted (packed blobs:
    /// [`Depot::packs`]).
    pub fn list_blobs(&self) -> Result<Vec<crate::digest::Digest>, DepotError> {
        let mut d = self.list_sharded(layout::OBJECTS_DIR, "")?;
        d.sort();
        Ok(d)
    }

    /// Names `<dir>/ab/<hex><suffix>` whose shard matches their prefix.
    fn list_sharded(
        &self,
        dir: &str,
        suffix: &str,
    ) -> Result<Vec<crate::digest::Digest>, DepotError> {
        let mut out = Vec::new();
        for shard in list_dir(&self.root.join(dir))? {
            let sname = shard.file_name().to_string_lossy().into_owned();
            if sname.len() != 2 || !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            for f in list_dir(&shard.path())? {
                let name = f.file_name().to_string_lossy().into_owned();
                out.extend(layout::sharded_digest(&sname, &name, suffix));
            }
        }
        Ok(out)
    }
}

/// `DEPOT.toml` as written: a comment, the settings, the checksum line.
pub(crate) fn render_config(config: &DepotConfig) -> String {
    checksum::seal(&format!(
        "# relocache depot: relative paths only, safe to copy, move or restore from a CI cache.\n{}",
        toml::to_string(config).expect("DEPOT.toml serializes")
    ))
}

/// Parses `DEPOT.toml` at `path`. Format 1 had no checksum; any later
/// format must pass its own. A file with a checksum line is checked
/// whatever format it claims.
pub(crate) fn parse_config(text: &str, path: &Path) -> Result<DepotConfig, DepotError> {
    let parse = |body: &str| {
        toml::from_str::<DepotConfig>(body).map_err(|e| DepotError::BadConfig {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })
    };
    match checksum::open(text) {
        Ok(body) => parse(body),
        Err(why) => {
            let legacy = matches!(why, checksum::Unsealed::Missing)
                && parse(text).is_ok_and(|c| c.format == 1);
            if legacy {
                return parse(text);
            }
            // A newer format may seal differently: say "upgrade", not "damaged".
            if let Ok(c) = parse(text).or_else(|_| parse(checksum_body(text))) {
                if c.format > PACKED_FORMAT {
                    return Ok(c);
                }
            }
            Err(DepotError::ConfigChecksum {
                path: path.to_path_buf(),
                actual: blake3::hash(checksum_body(text).as_bytes())
                    .to_hex()
                    .to_string(),
                why,
            })
        }
    }
}

/// `text` without a final `checksum = …` line, if it has one.
fn checksum_body(text: &str) -> &str {
    let trimmed = text.trim_end_matches('\n');
    match trimmed.rfind('\n') {
        Some(i) if trimmed[i + 1..].starts_with("checksum") => &text[..=i],
        None if trimmed.starts_with("checksum") => "",
        _ => text,
    }
}

/// The bytes of regular file `path`. A fifo, socket or device planted in a
/// depot is an error (read as damage), never a read that waits forever.
pub(crate) fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = crate::file_hash::open_regular(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// [`read_regular`] as UTF-8 text.
pub(crate) fn read_regular_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The entries of a depot directory; a directory that does not exist (yet)
/// is empty. Errors name the directory.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, DepotError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(DepotError::io("list", dir)(e)),
    };
    rd.map(|e| e.map_err(DepotError::io("list", dir))).collect()
}

/// Where the depot stack comes from, in the order ARCHITECTURE.md gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DepotSource {
    /// `--depot DIR`.
    Flag,
    /// `RELOCACHE_DEPOT`.
    Env,
    /// `RELOCACHE_DEPOT_PATH`.
    EnvPath,
    /// `[project] depot`.
    Manifest,
    /// The user cache directory.
    UserCache,
}

/// The depots to use: the first is written, all are read.
pub fn select_paths(
    flag: Option<&Path>,
    manifest: Option<&Path>,
    cwd: &Path,
) -> Result<(Vec<PathBuf>, DepotSource), DepotError> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    if let Some(f) = flag {
        return Ok((vec![abs(f)], DepotSource::Flag));
    }
    if let Some(v) = std::env::var_os("RELOCACHE_DEPOT").filter(|v| !v.is_empty()) {
        return Ok((vec![abs(Path::new(&v))], DepotSource::Env));
    }
    if let Some(v) = std::env::var_os("RELOCACHE_DEPOT_PATH").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| abs(&p))
            .collect();
        if !paths.is_empty() {
            return Ok((paths, DepotSource::EnvPath));
        }
    }
    if let Some(m) = manifest {
        return Ok((vec![m.to_path_buf()], DepotSource::Manifest));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .ok_or(DepotError::NoLocation)?;
    Ok((vec![base.join("relocache")], DepotSource::UserCache))
}

/// A depot stack: `RELOCACHE_DEPOT_PATH` semantics, first written, all read.
#[derive(Debug, Clone)]
pub struct DepotStack {
    depots: Vec<Depot>,
}

impl DepotStack {
    /// Opens (creating) the first depot and every further one that exists.
    pub fn open(paths: &[PathBuf]) -> Result<DepotStack, DepotError> {
        let mut depots = vec![Depot::open_or_create(&paths[0])?];
        for p in &paths[1..] {
            match Depot::open_existing(p) {
                Ok(d) => depots.push(d),
                Err(DepotError::NotADepot(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(DepotStack { depots })
    }

    /// Opens the depots that exist, creating nothing (for read-only commands).
    /// `None` when not even the first exists.
    pub fn open_read_only(paths: &[PathBuf]) -> Result<Option<DepotStack>, DepotError> {
        let mut depots = Vec::new();
        for p in paths {
            match Depot::open_existing(p) {
                Ok(d) => depots.push(d),
                Err(DepotError::NotADepot(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((!depots.is_empty()).then_some(DepotStack { depots }))
    }

    /// The depot that is written.
    pub fn primary(&self) -> &Depot {
        &self.depots[0]
    }

    /// All depots, in search order.
    pub fn all(&self) -> &[Depot] {
        &self.depots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_non_empty_directory_that_is_not_a_depot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            Depot::open_or_create(dir.path()),
            Err(DepotError::NotADepot(_))
        ));
        assert!(dir.path().join("precious.txt").exists());
    }

    #[test]
    fn refuses_a_newer_format() {
        let dir = tempfile::tempdir().unwrap();
        Depot::open_or_create(dir.path()).unwrap();
        std::fs::write(dir.path().join("DEPOT.toml"), "format = 99\n").unwrap();
        let e = Depot::open_or_create(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("newer than this relocache supports"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("DEPOT.toml"),
            checksum::seal("format = 99\n"),
        )
        .unwrap();
        let e = Depot::open_or_create(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("newer than this relocache supports"),
            "{e}"
        );
    }

    #[test]
    fn depot_toml_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        Depot::open_or_create(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("DEPOT.toml")).unwrap();
        let body = "# relocache depot: relative paths only, safe to copy, move or restore from a CI cache.\nformat = 2\n";
        assert_eq!(
            text,
            format!(
                "{body}checksum = \"{}\"\n",
                blake3::hash(body.as_bytes()).to_hex()
            )
        );
        assert!(std::fs::read_to_string(dir.path().join("CACHEDIR.TAG"))
            .unwrap()
            .starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    }

    /// A hand edit or damage fails the checksum, and the error gives the
    /// checksum that would accept the file as it is now.
    #[test]
    fn a_changed_depot_toml_is_refused_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        Depot::open_or_create(dir.path()).unwrap();
        let path = dir.path().join("DEPOT.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replace("format = 2\n", "format = 2\nmax_size = \"1G\"\n");
        std::fs::write(&path, &edited).unwrap();
        let e = Depot::open_existing(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("DEPOT.toml` is damaged") && e.contains("checksum"),
            "{e}"
        );
        let fixed = checksum::seal(checksum_body(&edited));
        let want = fixed.lines().last().unwrap();
        assert!(e.contains(want), "{e}");
        std::fs::write(&path, &fixed).unwrap();
        let d = Depot::open_existing(dir.path()).unwrap();
        assert_eq!(d.config().max_size.as_deref(), Some("1G"));
    }

    /// A format 1 depot opens; opened for writing, DEPOT.toml is sealed at
    /// the current format with its settings kept.
    #[test]
    fn a_format_1_depot_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("DEPOT.toml"),
            "format = 1\nmax_size = \"5G\"\n",
        )
        .unwrap();
        let d = Depot::open_existing(dir.path()).unwrap();
        assert_eq!(d.config().format, 1);
        let d = Depot::open_or_create(dir.path()).unwrap();
        assert_eq!(d.config().format, DEPOT_FORMAT);
        let d = Depot::open_existing(dir.path()).unwrap();
        assert_eq!(d.config().format, DEPOT_FORMAT);
        assert_eq!(d.config().max_size.as_deref(), Some("5G"));
    }
}

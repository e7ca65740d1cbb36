//! Restoring an entry's outputs into the project: each file is written to a
//! temporary name beside its destination and renamed over it, so a reader
//! never sees half a file; outputs that already hold the right content are
//! left untouched. A directory output missing on disk (a fresh checkout) is
//! built whole under a temporary name beside it and renamed into place once
//! complete ([`Stage`]): its files need no name of their own on the way.
//! Restores are copies (reflinks where the filesystem can); hard links into
//! the depot only on request (`RELOCACHE_RESTORE=hardlink`).
//! It must never write or delete outside the target's declared outputs, nor
//! through a symlink.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rayon::prelude::*;

use crate::depot::entries::{Entry, EntryError, OutputKind, OutputRecord};
use crate::depot::{Depot, DepotError};
use crate::digest::Digest;
use crate::file_hash::{hash_file, hash_file_len};
use crate::file_state::Stamp;
use crate::memo::StatMemo;
use crate::relpath::RelPath;

/// What a restore did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restored {
    /// Files written.
    pub files_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files already correct and left alone.
    pub files_unchanged: u64,
}

/// A declared output lies below a symlink on disk (one the user or a
/// command made where a parent directory of the output goes): restoring,
/// cleaning or storing it would write, delete or read wherever the link
/// points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output `{output}` of `{target}` lies below `{link}`, a symlink to `{points_to}`; relocache never writes or deletes through a symlink\n  help: make `{link}` a real directory (to keep build outputs on another disk, mount it there, or move the whole project)")]
pub struct ThroughSymlink {
    /// The declared output.
    pub output: RelPath,
    /// The target declaring it.
    pub target: String,
    /// The directory on the way to it that is a symlink.
    pub link: String,
    /// What the symlink's text says.
    pub points_to: String,
}

/// Checks that every directory on the way from `root` to each of `target`'s
/// `declared` outputs (the outputs' ancestors, below the root) is not a
/// symlink, with `lstat`. The root itself may be reached through a symlink,
/// and a declared output that is a symlink on disk is fine: a restore
/// replaces it and a cleanup removes it, neither follows it.
///
/// Run right before a restore, a cleanup or a store. A symlink swapped in by
/// another process between this check and the write is out of scope, as it
/// is for make or cargo: relocache guards against what stands on disk, not
/// against a concurrent writer in the project.
pub fn check_no_symlinked_parent(
    root: &Path,
    target: &str,
    declared: &[RelPath],
) -> Result<(), ThroughSymlink> {
    let mut seen: HashSet<&str> = HashSet::new();
    for d in declared {
        for a in d.self_and_ancestors().filter(|a| *a != d.as_str()) {
            if !seen.insert(a) {
                continue;
            }
            let p = root.join(a);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.file_type().is_symlink() => {
                    let points_to = fs::read_link(&p)
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_else(|e| format!("? ({e})"));
                    return Err(ThroughSymlink {
                        output: d.clone(),
                        target: target.to_owned(),
                        link: a.to_owned(),
                        points_to,
                    });
                }
                Ok(_) => {}
                // Nothing stands below a missing directory.
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// Makes the outputs declared by `declared` match `entry` below `root`.
/// The caller has checked [`check_no_symlinked_parent`] right before: below
/// the declared outputs, this never follows a symlink on disk.
pub fn restore(
    depot: &Depot,
    entry: &Entry,
    root: &Path,
    declared: &[RelPath],
    memo: Option<&StatMemo>,
    mode: RestoreMode,
) -> Result<Restored, DepotError> {
    within_declared(entry, declared)
        .and_then(|()| entry.check_covers(declared))
        .map_err(|e| DepotError::Damaged {
            path: depot.entry_path(&entry.key),
            message: e.to_string(),
        })?;
    let restoring = Restoring {
        depot,
        entry,
        root,
        declared,
        memo,
        mode,
    };
    match restoring.outputs(Stage::missing_dirs(entry, root, declared)?) {
        // Something made a staged output meanwhile (the staging directories
        // are gone with the error): restore over whatever is there now.
        Err(Staged::Taken) => restoring.outputs(Vec::new()).map_err(Staged::into_error),
        r => r.map_err(Staged::into_error),
    }
}

/// One entry's restore: [`restore`]'s arguments, checked.
#[derive(Clone, Copy)]
struct Restoring<'a> {
    depot: &'a Depot,
    entry: &'a Entry,
    root: &'a Path,
    declared: &'a [RelPath],
    memo: Option<&'a StatMemo>,
    mode: RestoreMode,
}

/// How a restore failed.
enum Staged {
    /// A staged directory could not be renamed into place: its destination
    /// appeared while it was being built.
    Taken,
    Failed(DepotError),
}

impl From<DepotError> for Staged {
    fn from(e: DepotError) -> Self {
        Staged::Failed(e)
    }
}

impl Staged {
    fn into_error(self) -> DepotError {
        match self {
            Staged::Failed(e) => e,
            Staged::Taken => unreachable!("an unstaged restore renames no directory"),
        }
    }
}

/// A directory output missing on disk, built under a temporary name beside
/// it and renamed into place when complete: a reader, `make` or the next
/// build sees no directory or the whole one, never a half-written file
/// under its final name, and its files are written where they will stay
/// (a file's own temporary name and rename cost a fifth of writing 20k
/// small files on ext4). Dropped before [`Stage::finish`] (an error, a
/// panic), it removes what it built; a process killed meanwhile leaves it
/// to the next staged restore beside it ([`crate::tempname::abandoned`]).
struct Stage {
    /// The declared output.
    output: RelPath,
    /// Where it goes.
    dest: std::path::PathBuf,
    /// The temporary directory it is built in.
    dir: std::path::PathBuf,
    /// The staging directory's lock, held while it is built.
    lock: Option<fs::File>,
}

/// Staging directories are temporary names for this purpose.
const STAGE_TMP: &str = "stage";

impl Stage {
    /// Stages for `entry`'s declared directory outputs that are missing on
    /// disk (not for one below another declared output: it is built in
    /// place with its parent's). A directory that cannot be staged (say,
    /// an unwritable parent) is restored in place, which reports the
    /// problem.
    fn missing_dirs(
        entry: &Entry,
        root: &Path,
        declared: &[RelPath],
    ) -> Result<Vec<Stage>, DepotError> {
        let mut stages = Vec::new();
        for d in declared {
            let is_dir = (entry.outputs.iter()).any(|o| o.path == *d && o.kind == OutputKind::Dir);
            let nested = declared.iter().any(|top| top != d && d.is_within(top));
            let dest = d.to_path(root);
            if !is_dir || nested || fs::symlink_metadata(&dest).is_ok() {
                continue;
            }
            let parent = dest.parent().expect("outputs have a parent");
            fs::create_dir_all(parent)
                .map_err(DepotError::io("create output directory", parent))?;
            for (old, _lock) in crate::tempname::abandoned(parent, STAGE_TMP) {
                let _ = remove_any(&old);
            }
            let dir = parent.join(crate::tempname::temp_name(STAGE_TMP));
            if fs::create_dir(&dir).is_err() {
                continue;
            }
            let mut stage = Stage {
                output: d.clone(),
                dest,
                dir,
                lock: None,
            };
            match fs::File::open(&stage.dir) {
                Ok(f) if f.try_lock().is_ok() => stage.lock = Some(f),
                _ => continue, // dropped: removed
            }
            stages.push(stage);
        }
        Ok(stages)
    }

    /// Where `path` is written: below the staging directory when it lies in
    /// this stage's output.
    fn place(&self, path: &RelPath) -> Option<std::path::PathBuf> {
        if !path.is_within(&self.output) {
            return None;
        }
        Some(
            match path.as_str()[self.output.as_str().len()..].strip_prefix('/') {
                Some(rest) => self.dir.join(rest),
                None => self.dir.clone(),
            },
        )
    }

    /// Renames the built directory into place.
    fn finish(mut self) -> Result<(), Staged> {
        match fs::rename(&self.dir, &self.dest) {
            Ok(()) => {
                self.dir = std::path::PathBuf::new();
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EEXIST | libc::ENOTEMPTY | libc::ENOTDIR | libc::EISDIR)
                ) =>
            {
                Err(Staged::Taken)
            }
            Err(e) => Err(DepotError::io("write output", &self.dest)(e).into()),
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = remove_any(&self.dir);
        }
    }
}

impl Restoring<'_> {
    /// Writes the entry's outputs, with `stages` for the declared directories
    /// missing on disk.
    fn outputs(self, stages: Vec<Stage>) -> Result<Restored, Staged> {
        let Restoring {
            depot,
            entry,
            root,
            declared,
            memo,
            mode,
        } = self;
        // Where each output goes, and whether it is staged (nothing is there).
        let place = |p: &RelPath| match stages.iter().find_map(|s| s.place(p)) {
            Some(staged) => (staged, true),
            None => (p.to_path(root), false),
        };
        // Directories and symlinks first, in path order, so parents exist.
        // Directories this restore creates are empty: their files need no stat.
        let mut fresh: HashSet<&str> = stages.iter().map(|s| s.output.as_str()).collect();
        // Directories whose recorded mode would keep this restore from writing
        // into them get it last, deepest first.
        let mut closed: Vec<(std::path::PathBuf, u32)> = Vec::new();
        for o in &entry.outputs {
            let (dest, _) = place(&o.path);
            match o.kind {
                OutputKind::Dir => {
                    let parent_fresh = parent_of(&o.path).is_some_and(|p| fresh.contains(p));
                    let existing = if parent_fresh {
                        None
                    } else {
                        match fs::symlink_metadata(&dest) {
                            Ok(md) if md.is_dir() => Some(md),
                            Ok(_) => {
                                remove_any(&dest)?;
                                None
                            }
                            Err(_) => None,
                        }
                    };
                    let md = match existing {
                        Some(md) => md,
                        None => {
                            fs::create_dir_all(&dest)
                                .map_err(DepotError::io("create output directory", &dest))?;
                            fresh.insert(o.path.as_str());
                            fs::symlink_metadata(&dest)
                                .map_err(DepotError::io("create output directory", &dest))?
                        }
                    };
                    if let Some(last) = set_dir_mode(&dest, md.permissions().mode(), o.perm())? {
                        closed.push((dest, last));
                    }
                }
                OutputKind::Symlink => restore_symlink(o, &dest)?,
                OutputKind::File => {}
            }
        }
        let files: Vec<&OutputRecord> = entry
            .outputs
            .iter()
            .filter(|o| o.kind == OutputKind::File)
            .collect();
        let one = |o: &&OutputRecord| {
            let new = parent_of(&o.path).is_some_and(|p| fresh.contains(p));
            let (dest, staged) = place(&o.path);
            let to = if staged {
                Destination::Staged
            } else if new {
                Destination::NewDir
            } else {
                Destination::Existing
            };
            restore_file(depot, o, &dest, to, memo, mode)
        };
        // Waking the thread pool costs more than a few small files.
        let results: Vec<Result<Option<u64>, DepotError>> = if files.len() < 16 {
            files.iter().map(one).collect()
        } else {
            files.par_iter().map(one).collect()
        };
        let mut stats = Restored::default();
        for r in results {
            match r? {
                Some(n) => {
                    stats.files_written += 1;
                    stats.bytes_written += n;
                }
                None => stats.files_unchanged += 1,
            }
        }
        // A staged directory holds only what this restore wrote.
        let unstaged: Vec<RelPath> = (declared.iter())
            .filter(|d| !stages.iter().any(|s| s.output == **d))
            .cloned()
            .collect();
        prune_extra(entry, root, &unstaged)?;
        for (dest, mode) in closed.iter().rev() {
            fs::set_permissions(dest, fs::Permissions::from_mode(*mode))
                .map_err(DepotError::io("set the mode of", dest))?;
        }
        for stage in stages {
            stage.finish()?;
        }
        tracing::debug!(
            written = stats.files_written,
            bytes = stats.bytes_written,
            unchanged = stats.files_unchanged,
            "restored"
        );
        Ok(stats)
    }
}

/// Gives a restored directory its recorded permission bits `want` (its
/// mode now is `current`), keeping setgid/sticky bits it already has (a
/// directory made by the command would have inherited them too). Directly,
/// unless `want` denies its owner write or search: then the owner gets
/// rwx until its contents are restored, and the exact mode is returned for
/// the caller to set last.
fn set_dir_mode(dest: &Path, current: u32, want: u32) -> Result<Option<u32>, DepotError> {
    let exact = (current & 0o7000) | want;
    let now = if want & 0o300 == 0o300 {
        exact
    } else {
        exact | 0o700
    };
    if current & 0o7777 != now {
        fs::set_permissions(dest, fs::Permissions::from_mode(now))
            .map_err(DepotError::io("set the mode of", dest))?;
    }
    Ok((now != exact).then_some(exact))
}

/// Checks that `entry` writes only the target's declared outputs: every
/// path is a declared output or lies below one, and every directory between
/// the declared output and the path is one of the entry's directories (which
/// a restore makes real directories), so no symlink on disk, left by an
/// earlier restore or anyone else, is ever followed. Entries come from
/// archives and remotes; one naming `relocache.toml` or `out/link/x` must not
/// write there.
fn within_declared(entry: &Entry, declared: &[RelPath]) -> Result<(), EntryError> {
    let dirs: HashSet<&str> = entry
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Dir)
        .map(|o| o.path.as_str())
        .collect();
    for o in &entry.outputs {
        let Some(top) = declared.iter().find(|d| o.path.is_within(d)) else {
            return Err(EntryError::NotDeclared {
                output: o.path.clone(),
                target: entry.target.clone(),
            });
        };
        let below_top = o
            .path
            .self_and_ancestors()
            .filter(|a| a.len() >= top.as_str().len() && *a != o.path.as_str());
        if let Some(a) = below_top.into_iter().find(|a| !dirs.contains(a)) {
            return Err(EntryError::NoDirectory {
                output: o.path.clone(),
                dir: a.to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether the file at `dest`, whose stat is `md`, already matches `o`
/// (kind, size, permission bits, content); the memo spares hashing an
/// output that has not been touched.
fn already_there(
    o: &OutputRecord,
    dest: &Path,
    md: &fs::Metadata,
    memo: Option<&StatMemo>,
) -> bool {
    if !md.is_file() || md.len() != o.size || md.permissions().mode() & 0o7777 != o.perm() {
        return false;
    }
    let stamp = Stamp::of(md);
    if let Some(d) = memo.and_then(|m| m.lookup(&o.path, &stamp)) {
        return Some(d) == o.digest;
    }
    match hash_file_len(dest, md.len()) {
        Ok((d, _)) => {
            if let Some(m) = memo {
                m.record(&o.path, stamp, d);
            }
            Some(d) == o.digest
        }
        Err(_) => false,
    }
}

/// The directory holding `path`, when it is not the project root.
fn parent_of(path: &RelPath) -> Option<&str> {
    path.as_str().rfind('/').map(|i| &path.as_str()[..i])
}

/// What stands where an output file is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// Its directory was there before: the file may be too.
    Existing,
    /// Its directory was created by this restore: nothing is there yet.
    NewDir,
    /// In a [`Stage`]: nothing is there, and nobody looks yet.
    Staged,
}

/// Writes one output file at `dest`.
fn restore_file(
    depot: &Depot,
    o: &OutputRecord,
    dest: &Path,
    to: Destination,
    memo: Option<&StatMemo>,
    mode: RestoreMode,
) -> Result<Option<u64>, DepotError> {
    // One stat says both whether the output is already right and whether a
    // directory is in the way.
    if let Some(md) = (to == Destination::Existing)
        .then(|| fs::symlink_metadata(dest).ok())
        .flatten()
    {
        if already_there(o, dest, &md, memo) {
            return Ok(None);
        }
        if md.is_dir() {
            remove_any(dest)?;
        }
    }
    let digest = o.digest.ok_or_else(|| DepotError::Damaged {
        path: depot.root().to_path_buf(),
        message: format!("output `{}` has no blob", o.path),
    })?;
    let parent = dest.parent().expect("outputs have a parent");
    if mode == RestoreMode::Hardlink {
        fs::create_dir_all(parent).map_err(DepotError::io("create output directory", parent))?;
        if let Some(n) = try_hardlink(depot, &digest, o, dest, parent)? {
            return Ok(Some(n));
        }
    }
    let Some(blob) = depot.open_blob(&digest)? else {
        return Err(DepotError::MissingBlob(digest));
    };
    if mode != RestoreMode::Copy {
        if let Some(n) = try_reflink(depot, &blob, o, dest, parent)? {
            return Ok(Some(n));
        }
    }
    // A staged file is written under its own name: the directory is not
    // in place until the whole restore is.
    let tmp = match to {
        Destination::Staged => dest.to_path_buf(),
        _ => temp_name(parent),
    };
    let file = create_temp(&tmp, parent)?;
    let written = (|| {
        // Small blobs go out in one write (see `Depot::copy_blob`), large
        // ones in 64 KiB chunks: no buffer of its own in between.
        let n = depot.copy_opened(blob, &mut &file)?;
        set_file_mode(&file, &tmp, o)?;
        if tmp != dest {
            fs::rename(&tmp, dest).map_err(DepotError::io("write output", dest))?;
        }
        Ok(n)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(Some)
}

/// How outputs are written. The CLI reads it from `RELOCACHE_RESTORE` and
/// passes it in [`BuildOptions`](super::BuildOptions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestoreMode {
    /// `reflink` (the default): reflinks where the filesystem can, else copies.
    #[default]
    Reflink,
    /// `copy`: always plain copies.
    Copy,
    /// `hardlink`: uncompressed blobs whose file has the output's exact
    /// permission bits are hard-linked into the project (no bytes written);
    /// an edit made through such a link changes the blob, which every read
    /// of it and `verify --integrity` catch. Otherwise as `reflink`.
    Hardlink,
}

/// A `RELOCACHE_RESTORE` value that names no [`RestoreMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RELOCACHE_RESTORE=`{0}` is not a restore mode\n  help: use `reflink` (the default), `copy` or `hardlink`")]
pub struct UnknownRestoreMode(pub String);

impl RestoreMode {
    /// The mode a `RELOCACHE_RESTORE` value names; unset (`None`) or empty
    /// is the default.
    pub fn parse(value: Option<&str>) -> Result<RestoreMode, UnknownRestoreMode> {
        match value {
            None | Some("") | Some("reflink") => Ok(RestoreMode::Reflink),
            Some("copy") => Ok(RestoreMode::Copy),
            Some("hardlink") => Ok(RestoreMode::Hardlink),
            Some(other) => Err(UnknownRestoreMode(other.to_owned())),
        }
    }
}

/// Restores a raw blob as a hard link to the depot's file, after checking
/// the blob (a link to a damaged blob would hand the damage on). `None` when
/// a link is not possible: a compressed blob, a blob file whose permission
/// bits are not the output's (the link shares them: an executable or a
/// `0600` output), or another filesystem.
fn try_hardlink(
    depot: &Depot,
    digest: &Digest,
    o: &OutputRecord,
    dest: &Path,
    parent: &Path,
) -> Result<Option<u64>, DepotError> {
    // Only a loose raw blob is a file of its own to link to.
    if !matches!(depot.open_blob(digest), Ok(Some(b)) if b.is_loose() && b.is_raw()) {
        return Ok(None);
    }
    let blob = depot.blob_path(digest);
    if !fs::symlink_metadata(&blob).is_ok_and(|md| md.permissions().mode() & 0o7777 == o.perm()) {
        return Ok(None);
    }
    if !matches!(hash_file(&blob), Ok((d, _)) if d == *digest) {
        return Err(depot.quarantine(digest));
    }
    let tmp = temp_name(parent);
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(&blob, &tmp).is_err() {
        return Ok(None);
    }
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(DepotError::io("write output", dest)(e));
    }
    Ok(Some(o.size))
}

/// Creates the temporary file an output is written to, private (`0600`)
/// until [`set_file_mode`] gives it the output's exact mode; the parent
/// directory is created only when it is missing.
fn create_temp(tmp: &Path, parent: &Path) -> Result<fs::File, DepotError> {
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(parent)
                .map_err(DepotError::io("create output directory", parent))?;
            open()
        }
        // Left by a killed process that had our pid: no live one can.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(tmp);
            open()
        }
        r => r,
    }
    .map_err(DepotError::io("create a temporary file in", parent))
}

/// Gives the written temporary file `tmp` the recorded permission bits of
/// `o` exactly (fchmod: the umask of this process does not apply, the
/// build's did when the command made the file).
fn set_file_mode(file: &fs::File, tmp: &Path, o: &OutputRecord) -> Result<(), DepotError> {
    file.set_permissions(fs::Permissions::from_mode(o.perm()))
        .map_err(DepotError::io("set the mode of", tmp))
}

/// Restores a raw (uncompressed) blob by reflink when the filesystem can:
/// the copy shares extents with the depot until either side is written, so
/// it is still a copy, never a link. The result is hashed before it is
/// renamed into place. `None` when a reflink is not possible here.
fn try_reflink(
    depot: &Depot,
    blob: &crate::depot::packs::StoredBlob,
    o: &OutputRecord,
    dest: &Path,
    parent: &Path,
) -> Result<Option<u64>, DepotError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Asked once per process: most filesystems cannot, and asking costs an
    // open of the blob and a failed ioctl per output.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let digest = blob.digest();
    if !blob.is_raw() {
        return Ok(None); // compressed: it must be decompressed, not cloned
    }
    let (src, offset, length) = blob.file_range();
    if !blob.is_loose() && length < CLONE_BLOCK {
        return Ok(None); // no whole block of a pack to share: a copy is as good
    }
    let tmp = temp_name(parent);
    let file = create_temp(&tmp, parent)?;
    let cloned = if blob.is_loose() {
        reflink_copy::reflink_file(src, &file)
    } else {
        clone_range(src, offset, length, &file)
    };
    if let Err(e) = cloned {
        let _ = fs::remove_file(&tmp);
        // EOPNOTSUPP, ENOTTY, EXDEV, EINVAL: not on this filesystem (pair).
        if matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::EINVAL)
        ) || e.kind() == std::io::ErrorKind::Unsupported
        {
            UNSUPPORTED.store(true, Ordering::Relaxed);
        }
        return Ok(None);
    }
    // Every read is verified: hash what the output now holds.
    let checked = hash_file(&tmp);
    if !matches!(checked, Ok((d, _)) if d == *digest) {
        let _ = fs::remove_file(&tmp);
        return Err(depot.corrupt(digest, blob.location()));
    }
    if let Err(e) = set_file_mode(&file, &tmp, o) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(DepotError::io("write output", dest)(e));
    }
    Ok(Some(o.size))
}

/// The block size a range reflink shares: a packed raw blob of at least
/// this many bytes starts on a multiple of it ([`crate::depot::packs::ALIGN`]).
const CLONE_BLOCK: u64 = crate::depot::packs::ALIGN;

/// Makes `dest` (empty) hold bytes `offset..offset + length` of `src`: the
/// whole blocks by one `FICLONERANGE` (shared extents on btrfs and XFS), the
/// tail that is not a whole block by `pread`/`write`. The ioctl's error is
/// returned when the filesystem cannot, and the caller copies instead.
fn clone_range(src: &fs::File, offset: u64, length: u64, dest: &fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let whole = length / CLONE_BLOCK * CLONE_BLOCK;
    let range = libc::file_clone_range {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset: offset,
        src_length: whole,
        dest_offset: 0,
    };
    // SAFETY: both descriptors are open for the duration of the call, and
    // `range` is a valid file_clone_range the kernel only reads.
    let rc = unsafe { libc::ioctl(dest.as_raw_fd(), libc::FICLONERANGE, &range) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; (length - whole) as usize];
    src.read_exact_at(&mut buf, offset + whole)?;
    dest.write_all_at(&buf, whole)
}

/// A temporary name beside an output, unique within this process (two
/// outputs with the same content in one directory are restored in parallel)
/// and recognized by the walk as never an input ([`crate::tempname`]).
fn temp_name(parent: &Path) -> std::path::PathBuf {
    parent.join(crate::tempname::temp_name("restore"))
}

fn restore_symlink(o: &OutputRecord, dest: &Path) -> Result<(), DepotError> {
    let target = o.target.as_deref().unwrap_or_default();
    if let Ok(existing) = fs::read_link(dest) {
        if existing.as_os_str() == target {
            return Ok(());
        }
    }
    if let Ok(md) = fs::symlink_metadata(dest) {
        if md.is_dir() {
            remove_any(dest)?;
        }
    }
    let parent = dest.parent().expect("outputs have a parent");
    fs::create_dir_all(parent).map_err(DepotError::io("create output directory", parent))?;
    let tmp = parent.join(crate::tempname::temp_name("link"));
    std::os::unix::fs::symlink(target, &tmp).map_err(DepotError::io("create symlink", dest))?;
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        DepotError::io("create symlink", dest)(e)
    })
}

/// Inside declared output directories, removes whatever the entry does not list.
fn prune_extra(entry: &Entry, root: &Path, declared: &[RelPath]) -> Result<(), DepotError> {
    let listed: HashSet<&str> = entry.outputs.iter().map(|o| o.path.as_str()).collect();
    for d in declared {
        let is_dir = entry
            .outputs
            .iter()
            .any(|o| o.path == *d && o.kind == OutputKind::Dir);
        if !is_dir {
            continue;
        }
        let abs = d.to_path(root);
        // walkdir follows a root that is a symlink: walk only a real directory.
        if !fs::symlink_metadata(&abs).is_ok_and(|md| md.is_dir()) {
            continue;
        }
        let mut it = walkdir::WalkDir::new(&abs)
            .min_depth(1)
            .follow_links(false)
            .into_iter();
        while let Some(item) = it.next() {
            let Ok(item) = item else { continue };
            let Ok(rel) = item.path().strip_prefix(root) else {
                continue;
            };
            let Ok(rel) = RelPath::from_path(rel) else {
                continue;
            };
            if !listed.contains(rel.as_str()) {
                if item.file_type().is_dir() {
                    it.skip_current_dir();
                }
                remove_any(item.path())?;
            }
        }
    }
    Ok(())
}

/// Removes a file, symlink or directory tree.
pub(crate) fn remove_any(p: &Path) -> Result<(), DepotError> {
    let md = match fs::symlink_metadata(p) {
        Ok(md) => md,
        Err(_) => return Ok(()),
    };
    let r = if md.is_dir() {
        fs::remove_dir_all(p).or_else(|e| {
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            // A directory denying its owner write or search (`chmod 555`,
            // as a command, and so its restore, may leave one) cannot be
            // emptied: give the owner rwx on each, then try again.
            let walk = walkdir::WalkDir::new(p).follow_links(false);
            for item in walk.into_iter().flatten() {
                if item.file_type().is_dir() {
                    if let Ok(md) = item.metadata() {
                        let mode = md.permissions().mode() | 0o700;
                        let _ = fs::set_permissions(item.path(), fs::Permissions::from_mode(mode));
                    }
                }
            }
            fs::remove_dir_all(p)
        })
    } else {
        fs::remove_file(p)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DepotError::io("remove", p)(e)),
    }
}

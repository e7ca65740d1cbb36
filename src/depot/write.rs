//! The one door for writing into the depot: a temporary file in `tmp/`,
//! fsync, rename into place, fsync of the parent directory. A crash at any
//! instant leaves either the old state or the complete new file under its
//! final name, never a partial one. No other module writes depot files.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{Depot, DepotError};

/// A staging file in the depot's `tmp/`. Created 0666 minus the umask, like
/// any ordinary file, so a depot shared between users stays readable
/// (tempfile's default 0600 would lock others out).
pub(crate) fn staging(depot: &Depot) -> Result<NamedTempFile, DepotError> {
    let tmp = depot.tmp_dir();
    let make = || {
        tempfile::Builder::new()
            .prefix(".stage-")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(&tmp)
    };
    match make() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&tmp).map_err(DepotError::io("create", &tmp))?;
            make().map_err(DepotError::io("create a staging file in", &tmp))
        }
        Err(e) => Err(DepotError::io("create a staging file in", &tmp)(e)),
    }
}

/// Makes a staged file durable and renames it to `dest`. Renaming onto an
/// existing content-addressed name is fine: the content is the same.
pub(crate) fn persist(staged: NamedTempFile, dest: &Path) -> Result<(), DepotError> {
    staged
        .as_file()
        .sync_all()
        .map_err(DepotError::io("sync", staged.path()))?;
    persist_batched(staged, dest)?;
    sync_dir(dest.parent().expect("depot paths have a parent"));
    Ok(())
}

/// Renames a staged file into place without syncing it: part of a batch whose
/// durability [`sync_batch`] establishes at once, before anything that refers
/// to these files (an entry) is published.
pub(crate) fn persist_batched(staged: NamedTempFile, dest: &Path) -> Result<(), DepotError> {
    start_writeback(staged.as_file());
    // The shard directory usually exists: create it only when told it is missing.
    let staged = match staged.persist(dest) {
        Ok(_) => return Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => e.file,
        Err(e) => return Err(DepotError::io("rename into", dest)(e.error)),
    };
    let parent = dest.parent().expect("depot paths have a parent");
    std::fs::create_dir_all(parent).map_err(DepotError::io("create", parent))?;
    staged
        .persist(dest)
        .map_err(|e| DepotError::io("rename into", dest)(e.error))?;
    Ok(())
}

/// Starts writing `file`'s dirty pages to disk without waiting, so the disk
/// works while the batch goes on and the final [`sync_batch`] has little
/// left to wait for. Best effort: only a hint.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules writeback.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Makes every batched write in the depot's filesystem durable with one
/// `syncfs(2)`: thousands of small blobs cost one flush instead of two
/// fsyncs each. Falls back to `sync(2)` where `syncfs` is refused.
pub(crate) fn sync_batch(depot: &Depot) -> Result<(), DepotError> {
    use std::os::fd::AsRawFd;
    let root = depot.root();
    let dir = File::open(root).map_err(DepotError::io("open", root))?;
    // SAFETY: syncfs takes a valid open file descriptor, which `dir` owns.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    Ok(())
}

/// Writes `bytes` to `dest` atomically and durably.
pub(crate) fn write_bytes(depot: &Depot, dest: &Path, bytes: &[u8]) -> Result<(), DepotError> {
    let mut staged = staging(depot)?;
    staged
        .write_all(bytes)
        .map_err(DepotError::io("write", staged.path()))?;
    persist(staged, dest)
}

/// Writes `bytes` atomically under a new name `<prefix><unique><suffix>` in
/// `dir`, never replacing an existing file, so two writers (processes or
/// machines sharing the depot) can never overwrite each other. Returns the
/// path written. Not fsynced: it writes per-process usage logs, which every
/// build (even a no-op one) leaves and which are statistics — a power cut may
/// lose the last ones, their readers skip damaged lines, and two fsyncs per
/// no-op build were a fifth of its time.
pub(crate) fn write_new(
    depot: &Depot,
    dir: &Path,
    prefix: &str,
    suffix: &str,
    bytes: &[u8],
) -> Result<PathBuf, DepotError> {
    let mut staged = staging(depot)?;
    staged
        .write_all(bytes)
        .map_err(DepotError::io("write", staged.path()))?;
    std::fs::create_dir_all(dir).map_err(DepotError::io("create", dir))?;
    let mut attempt = 0u32;
    loop {
        // The staging name is random; pid, time and attempt make a clash
        // with another machine's name vanishingly unlikely, and a clash is
        // refused by the no-clobber rename anyway.
        let mut h = blake3::Hasher::new();
        h.update(staged.path().as_os_str().as_encoded_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&attempt.to_le_bytes());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(&nanos.to_le_bytes());
        let unique = &h.finalize().to_hex()[..16];
        let dest = dir.join(format!("{prefix}{unique}{suffix}"));
        match staged.persist_noclobber(&dest) {
            Ok(_) => return Ok(dest),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                staged = e.file;
                attempt += 1;
            }
            Err(e) => return Err(DepotError::io("rename into", &dest)(e.error)),
        }
    }
}

/// Writes `bytes` to `dest` atomically but without fsync: for hints (project
/// records, the stat memo) whose loss in a power cut costs nothing but a
/// re-hash or a less precise `status`, and whose readers tolerate damage.
pub(crate) fn write_hint(depot: &Depot, dest: &Path, bytes: &[u8]) -> Result<(), DepotError> {
    let mut staged = staging(depot)?;
    staged
        .write_all(bytes)
        .map_err(DepotError::io("write", staged.path()))?;
    persist_batched(staged, dest)
}

/// fsync of a directory, so a rename in it survives a power cut. Best effort:
/// some filesystems refuse to sync directories.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

//! Per-key build locks (`locks/<key>.lock`): advisory file locks so that two
//! processes needing the same missing key build it once. The file stays while
//! a build runs (or after a crash), which is the `started` state of `status`;
//! the kernel drops the lock when its holder dies, so a dead holder's lock is
//! simply taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{layout, Depot, DepotError};
use crate::digest::Key;

/// A held per-key lock. Dropping it without [`KeyLock::release`] leaves the
/// placeholder file behind, as a crash would.
#[derive(Debug)]
pub struct KeyLock {
    file: File,
    path: PathBuf,
}

/// Lock state of a key, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No placeholder.
    Free,
    /// A live process holds it (its description).
    Held(String),
    /// A placeholder whose holder is gone (a crashed build).
    Abandoned,
}

impl Depot {
    /// Where the lock of `key` lives.
    pub fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join(layout::key_lock(key))
    }

    /// Takes the lock of `key`, calling `waiting` with the holder's
    /// description once if another process has it, then blocking.
    pub fn lock_key(
        &self,
        key: &Key,
        mut waiting: impl FnMut(&str),
    ) -> Result<KeyLock, DepotError> {
        let path = self.lock_path(key);
        let mut told = false;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(DepotError::io("create lock", &path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    if !told {
                        waiting(&holder(&file));
                        told = true;
                    }
                    file.lock()
                        .map_err(DepotError::io("wait for lock", &path))?;
                }
                Err(TryLockError::Error(e)) => return Err(DepotError::io("lock", &path)(e)),
            }
            // The previous holder may have removed the file after we opened
            // it: then our lock is on an orphaned inode, so start over.
            let same = match (std::fs::metadata(&path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                let mut f = &file;
                let _ = f.set_len(0);
                let _ = writeln!(
                    f,
                    "pid {} since {}",
                    std::process::id(),
                    super::records::now_rfc3339()
                );
                return Ok(KeyLock { file, path });
            }
        }
    }

    /// Whether `key` has a build in progress or an abandoned placeholder.
    /// Never creates anything.
    pub fn lock_state(&self, key: &Key) -> LockState {
        let path = self.lock_path(key);
        let file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(_) => return LockState::Free,
        };
        match file.try_lock_shared() {
            Ok(()) => LockState::Abandoned,
            Err(_) => LockState::Held(holder(&file)),
        }
    }
}

impl Depot {
    /// Waits for the commands a killed build left running. A command
    /// inherits its key's lock (see [`KeyLock::raw_fd`]), so a placeholder
    /// whose lock is held although the relocache process named in it is gone
    /// is held by such orphans; they may still write their target's outputs,
    /// over whatever this build restores there for another key. `waiting` is
    /// told once per such lock before the wait.
    pub fn wait_for_orphans(&self, mut waiting: impl FnMut(&str)) {
        let Ok(paths) = self.lock_files() else {
            return;
        };
        for path in paths {
            let Ok(file) = crate::file_hash::open_regular(&path) else {
                continue;
            };
            if file.try_lock_shared().is_ok() {
                continue; // free, or abandoned by a build with no command left
            }
            let text = placeholder(&file);
            let Some(pid) = text
                .strip_prefix("pid ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // SAFETY: signal 0 only asks whether the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                waiting(&format!("relocache {text}"));
                let _ = file.lock_shared();
            }
        }
    }
}

impl Depot {
    /// The depot-wide gc lock (`locks/gc`), shared by entry publishes and
    /// exclusive for gc's delete phase (see [`Depot::write_entry`]); held
    /// until the file is dropped. `None` when it cannot be opened (a
    /// read-only depot, where nothing is published or deleted anyway).
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Option<File> {
        let path = self.root.join(layout::LOCKS_DIR).join(layout::GC_LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ok()?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.ok().map(|()| file)
    }

    /// Every lock placeholder (`locks/*.lock`), sorted.
    pub(crate) fn lock_files(&self) -> Result<Vec<PathBuf>, DepotError> {
        let mut v = Vec::new();
        for e in super::list_dir(&self.root.join(layout::LOCKS_DIR))? {
            if e.file_name()
                .to_string_lossy()
                .ends_with(layout::LOCK_SUFFIX)
            {
                v.push(e.path());
            }
        }
        v.sort();
        Ok(v)
    }

    /// Removes the placeholder at `path` when no process holds it (a crashed
    /// build's). It is removed while locked, and [`Depot::lock_key`]
    /// re-checks the inode it locked, so a build taking the key at the same
    /// moment simply starts over on a fresh file.
    pub(crate) fn remove_abandoned_lock(&self, path: &std::path::Path) -> bool {
        let Ok(file) = OpenOptions::new().read(true).open(path) else {
            return false;
        };
        if file.try_lock().is_err() {
            return false;
        }
        let same = match (std::fs::metadata(path), file.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        same && std::fs::remove_file(path).is_ok()
    }
}

impl KeyLock {
    /// The lock's file descriptor, for a command to inherit: the kernel
    /// keeps the lock while any process holds it, so when this process dies
    /// mid-build (kill -9), the key stays locked until the commands it
    /// started have exited too, and a retry waits for them instead of
    /// running a second copy beside them into the same outputs.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.file)
    }

    /// Removes the placeholder and unlocks.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// What a lock placeholder says of its holder (`pid N since …`), trimmed.
fn placeholder(mut file: &File) -> String {
    let mut s = String::new();
    let _ = file.read_to_string(&mut s);
    s.trim().to_owned()
}

fn holder(file: &File) -> String {
    let s = placeholder(file);
    if s.is_empty() {
        "another relocache process".to_owned()
    } else {
        format!("relocache {s}")
    }
}

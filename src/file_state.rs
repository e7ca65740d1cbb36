//! The on-disk state of a file as it enters a key ([`FileState`], stored in
//! entries' inputs summaries) and the stat fields that say whether a file may
//! have changed since it was hashed ([`Stamp`]), and what a symlink inside
//! the project resolves to ([`Resolved`], found by `follow`). Shared by the walk, the
//! stat memo and the inputs, so none of them imports another for these
//! types. Plain data: no I/O beyond reading a given `Metadata`.

use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::relpath::RelPath;

/// The state of one input file as it enters a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileState {
    /// A regular file, by content.
    File {
        /// blake3 of the content.
        digest: Digest,
        /// Size in bytes.
        size: u64,
        /// Any execute bit set.
        executable: bool,
    },
    /// A symbolic link, by its target text and, when it resolves inside the
    /// project, by what it resolves to ([`crate::follow`]).
    Symlink {
        /// What the link points to.
        target: String,
        /// What it resolves to, inside the project.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolved: Option<Resolved>,
    },
    /// A directory below a directory input, by its name only: its entries
    /// are inputs of their own, so an empty one added or removed changes
    /// the key (a command listing the tree sees it).
    Dir,
    /// `track_content = false`: size and mtime only.
    Untracked {
        /// Size in bytes.
        size: u64,
        /// Modification time in nanoseconds since the epoch.
        mtime_ns: i128,
    },
}

/// stat fields that say whether a file may have changed since it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) ino: u64,
}

impl Stamp {
    /// The stamp of `md`.
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: md.len(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            ino: md.ino(),
        }
    }
}

/// What a symlink inside the project resolves to, as it enters a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolved {
    /// A regular file.
    File {
        /// Where the link leads.
        path: RelPath,
        /// blake3 of its content.
        digest: Digest,
        /// Any execute bit set.
        executable: bool,
    },
    /// A directory.
    Dir {
        /// Where the link leads.
        path: RelPath,
        /// The digest of the tree below it (see the module docs).
        tree: Digest,
    },
}

impl Resolved {
    /// The canonical bytes of what the link resolves to: `F` ‖ `u64le`
    /// path length ‖ path ‖ digest ‖ `u8` executable, or `D` ‖ `u64le` path
    /// length ‖ path ‖ tree digest.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, path, digest, tail) = match self {
            Resolved::File {
                path,
                digest,
                executable,
            } => (b'F', path, digest, Some(*executable as u8)),
            Resolved::Dir { path, tree } => (b'D', path, tree, None),
        };
        let mut v = vec![tag];
        v.extend_from_slice(&(path.as_str().len() as u64).to_le_bytes());
        v.extend_from_slice(path.as_str().as_bytes());
        v.extend_from_slice(&digest.0);
        v.extend(tail);
        v
    }

    /// Where the link leads.
    pub fn path(&self) -> &RelPath {
        match self {
            Resolved::File { path, .. } | Resolved::Dir { path, .. } => path,
        }
    }
}

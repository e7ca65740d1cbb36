//! Blob ingest: the one way a blob file enters `objects-v1/`, whoever brings
//! it (a build's store, `unpack`, a remote download, a copy between the
//! depots of a stack). Its stored bytes (zstd or raw) are staged in `tmp/`;
//! the caller computes the digest of their content while they stream (it
//! knows how: hashing the source, checking an archive's budgets); the file is
//! renamed to its name only when that digest is the name, made durable now
//! or with the batch ([`Durability`]). A blob whose content was not checked
//! never gets a name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{layout, write, Depot, DepotError};
use crate::digest::Digest;

/// When a stored blob becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync of the file and its directory before returning.
    Now,
    /// Renamed into place unsynced; [`Depot::sync_batch`] must run before
    /// anything that references the blob is published.
    Batched,
}

/// A blob being ingested: a staging file in the depot's `tmp/`, removed
/// unless [`BlobIngest::persist`] names it.
#[derive(Debug)]
pub struct BlobIngest {
    staged: NamedTempFile,
    root: PathBuf,
}

impl Depot {
    /// Starts ingesting a blob: a new staging file in `tmp/`.
    pub fn ingest_blob(&self) -> Result<BlobIngest, DepotError> {
        Ok(BlobIngest {
            staged: write::staging(self)?,
            root: self.root.clone(),
        })
    }
}

impl BlobIngest {
    /// Appends stored bytes.
    pub fn write_all(&mut self, stored: &[u8]) -> Result<(), DepotError> {
        self.staged
            .write_all(stored)
            .map_err(DepotError::io("write", self.staged.path()))
    }

    /// The staging file, for writers that stream into it (compressors,
    /// copies) and report their own errors.
    pub fn file_mut(&mut self) -> &mut File {
        self.staged.as_file_mut()
    }

    /// The staging file's path, for error messages.
    pub fn path(&self) -> &Path {
        self.staged.path()
    }

    /// A new handle on the staged bytes, to hash them when they could not be
    /// hashed while they streamed (an async download).
    pub fn reopen(&self) -> std::io::Result<File> {
        self.staged.reopen()
    }

    /// Names the staged file `name` (an existing blob of that name is the
    /// same content, and is fine), given `content`: the digest of the
    /// staged content the caller computed. When they differ nothing is
    /// stored and [`DepotError::Mismatch`] is returned; callers check first
    /// to say what the bytes were.
    pub fn persist(
        self,
        name: &Digest,
        content: &Digest,
        durability: Durability,
    ) -> Result<(), DepotError> {
        if name != content {
            return Err(DepotError::Mismatch {
                digest: *name,
                actual: *content,
            });
        }
        let dest = self.root.join(layout::blob(name));
        match durability {
            Durability::Now => write::persist(self.staged, &dest),
            Durability::Batched => write::persist_batched(self.staged, &dest),
        }
    }
}

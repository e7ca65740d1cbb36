//! `pack` and `unpack`: depot entries moved between machines and CI caches as
//! one standard tar stream compressed with zstd. This module owns the archive
//! format and every check an archive must pass before it reaches a depot; it
//! writes a depot only through [`Depot`](crate::depot::Depot) methods (blobs through
//! [`Depot::ingest_blob`](crate::depot::Depot::ingest_blob)), and never writes anywhere else (the one exception, [`pack_to_path`], writes the
//! archive the user named).
//!
//! # The archive
//!
//! A POSIX ustar stream, zstd-compressed as a sequence of frames that any
//! zstd decoder reads as one stream (`tar --zstd -xf` works): compressed
//! frames (multithreaded, with a content checksum) around a run of *stored*
//! frames — raw blocks — carrying the blobs that are already zstd-compressed,
//! so nothing is compressed twice. Members, in this order:
//!
//! ```text
//! CACHEDIR.TAG                      so that `tar -x` gives a directory backup tools skip
//! DEPOT.toml                        `format = 2`: the layout version, never local settings; sealed
//! objects-v1/  objects-v1/ab/…      directories (0755)
//! objects-v1/ab/<blake3-hex>        blobs stored zstd-compressed, by digest, in stored frames
//! objects-v1/ab/<blake3-hex>        blobs stored raw, by digest, in a compressed frame (0644)
//! entries-v2/  entries-v2/ab/
//! entries-v2/ab/<key-hex>.toml      entries, by key (0644)
//! signatures-v1/  signatures-v1/ab/  (only with a signing key)
//! signatures-v1/ab/<key-hex>.mac    each entry's signature: 64 hex digits and a newline
//! variants-v1/  variants-v1/ab/     (only with entries of targets with a depfile)
//! variants-v1/ab/<key-hex>.toml     their variants records, the packed sets only
//! ```
//!
//! Signatures ([`crate::signing`]) are the keyed blake3 MAC of an entry's
//! key and its exact member bytes. `pack` writes them whenever a signing key
//! is set; `unpack` checks them only when asked (`require_signed`), and then
//! refuses the whole archive at the first entry without a valid one.
//!
//! Blobs come before entries, the depot's own publish order, so even a plain
//! `tar -x` that is interrupted never leaves an entry without its blobs.
//! Every header has mtime 0, uid and gid 0, empty owner names and a fixed
//! mode, members are sorted, and zstd's multithreaded streaming output does
//! not depend on the number of threads: the same entries give the same bytes
//! on any machine. Project records (`projects-v2/`), `usage/`, `locks/`,
//! `tmp/` and `quarantine/` are local state and never packed.
//!
//! # What `unpack` accepts
//!
//! The stream is read once, never held in memory. Each member must be a
//! regular file or directory whose path is exactly one of the forms above;
//! `..`, absolute paths, links, devices, fifos and anything else are refused.
//! Each blob is streamed into one new pack (staged in `tmp/`) while the
//! blake3 of its *uncompressed* content is computed, and kept there only when
//! that matches its name (a blob the depot already has, loose or packed, is
//! verified and skipped); an archive of fewer than `LOOSE_LIMIT` new blobs
//! writes them as loose files instead (see `unpack.rs`). Entries are parsed,
//! checked against their file name and held; they are published only after
//! the whole archive was read, its tar end marker seen, every blob each entry
//! names is in the archive or the depot, and the pack and its index are
//! durable. A failed unpack publishes no entry and leaves no pack; loose
//! blobs it already verified stay (they are content-addressed and harmless,
//! and `gc` reclaims them).
//!
//! Limits: the decompressed tar stream may not exceed `max_size`; once it is
//! past [`BOMB_MIN`], it may not be more than `max_ratio` times the compressed
//! bytes read so far (a relocache archive holds already-compressed blobs, so
//! its ratio stays near 1); each blob's uncompressed content may not exceed
//! `max_size` either, which bounds the work of hashing a compressed blob.
//!
//! # Files
//!
//! `pack` writes archives, `unpack` reads them; `current` chooses the
//! entries of `pack --current` (every target's current key); `frames` is the zstd
//! framing, `members` the member names an archive may hold, `check` the
//! limits and content checks every byte passes while it streams.

mod check;
mod current;
mod frames;
mod members;
mod pack;
mod unpack;

pub use current::{current_entries, Unbuilt};
pub use pack::{depot_entries, pack, pack_to_path};
pub use unpack::{unpack, UnpackOptions, UnpackSummary};

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::depot::entries::Entry;
use crate::depot::{DepotError, DEPOT_FORMAT};
use crate::digest::{Digest, Key};
use crate::units::format_size;

/// Default bound on an archive's decompressed size: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;
/// Default bound on decompressed / compressed bytes.
pub const DEFAULT_MAX_RATIO: u64 = 1000;
/// The ratio rule applies once this much was decompressed (16 MiB).
pub const BOMB_MIN: u64 = 16 << 20;
/// Default zstd level of the archive stream.
pub const DEFAULT_LEVEL: i32 = 1;
/// An entry file larger than this is refused (entries are small TOML files).
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// `DEPOT.toml` and `CACHEDIR.TAG` larger than this are refused.
const MAX_SMALL_FILE: u64 = 64 << 10;
const BUF: usize = 64 * 1024;

/// Why a pack or unpack failed. Every variant of an unpack failure means
/// that no entry of the archive was published.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The depot failed.
    #[error("{0}")]
    Depot(#[source] DepotError),
    /// Reading or writing a file other than the depot failed.
    #[error("could not {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("could not write the archive: {0}")]
    Write(#[source] io::Error),
    /// The stream is not a valid zstd-compressed tar archive.
    #[error("the archive is corrupt or truncated: {0}; nothing was published\n  help: make it again with `relocache pack`, or check the download or cache step that produced it")]
    Corrupt(#[source] io::Error),
    /// The tar stream ended without its end-of-archive marker.
    #[error("the archive is truncated (it ends without tar's end-of-archive marker); nothing was published\n  help: make it again with `relocache pack`, or check the download or cache step that produced it")]
    Truncated,
    /// A member that a depot archive never holds.
    #[error("archive member `{member}` {problem}; nothing was published\n  help: unpack only archives made by `relocache pack`; a depot archive holds regular files under objects-v1/ and entries-v2/ (plus DEPOT.toml and CACHEDIR.TAG)")]
    BadMember {
        /// The member's path as written in the archive.
        member: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A blob's content does not match its name.
    #[error("archive member `{member}`: its content hashes to {actual}, not to its name; nothing was published\n  help: the archive is corrupt or was tampered with; make it again with `relocache pack`")]
    BlobMismatch {
        /// The member.
        member: String,
        /// The digest of what it holds.
        actual: Digest,
    },
    /// An entry names a blob that is neither in the archive nor in the depot.
    #[error("entry {key} ({target}) needs blob {blob}, which is neither in the archive nor in the depot; nothing was published\n  help: pack the entry together with its blobs (`relocache pack` always does)")]
    MissingBlob {
        /// The entry.
        key: Key,
        /// `project/target` of the entry.
        target: String,
        /// The blob.
        blob: Digest,
    },
    /// The decompressed stream exceeds `max_size`.
    #[error("the archive decompresses to more than {} (--max-size); nothing was published\n  help: if you trust it, raise --max-size (e.g. --max-size 200G)", format_size(*.limit))]
    TooLarge {
        /// The bound, in bytes.
        limit: u64,
    },
    /// One blob's content exceeds `max_size`.
    #[error("archive member `{member}` holds more than {} of content (--max-size); nothing was published\n  help: if you trust the archive, raise --max-size", format_size(*.limit))]
    BlobTooLarge {
        /// The member.
        member: String,
        /// The bound, in bytes.
        limit: u64,
    },
    /// The blobs' contents add up to more than the archive's limits: blobs
    /// that are small zstd frames of huge content.
    #[error("the blobs in the archive decompress to more than {} in all (--max-size, and --max-ratio times the compressed bytes read): refusing a likely decompression bomb; nothing was published\n  help: if you trust it, raise --max-size or pass --max-ratio 0", format_size(*.cap))]
    ContentTooLarge {
        /// The bound the content crossed, in bytes.
        cap: u64,
    },
    /// The compression ratio signals a decompression bomb.
    #[error("the archive expands more than {ratio}x ({} from {} compressed): refusing a likely decompression bomb; nothing was published\n  help: if you trust it, pass --max-ratio 0 to turn this check off", format_size(*.decompressed), format_size(*.compressed))]
    Bomb {
        /// The bound.
        ratio: u64,
        /// Decompressed bytes so far.
        decompressed: u64,
        /// Compressed bytes so far.
        compressed: u64,
    },
    /// The archive was made by a relocache whose entries carry no checksum.
    #[error("the archive has depot format {found}, whose entries carry no checksum, so this relocache cannot trust them; nothing was published\n  help: make the archive again with this relocache (`relocache build`, then `relocache pack`)")]
    OlderFormat {
        /// Its format.
        found: u32,
    },
    /// The archive was made by a newer relocache.
    #[error("the archive has depot format {found}, newer than this relocache supports ({DEPOT_FORMAT}); nothing was published\n  help: upgrade relocache")]
    NewerFormat {
        /// Its format.
        found: u32,
    },
    /// `unpack --require-signed`: an entry without a valid signature.
    #[error(
        "archive member `{member}` ({target}) {problem}; nothing was published\n  help: {help}"
    )]
    Unsigned {
        /// The entry's member.
        member: String,
        /// `project/target` of the entry.
        target: String,
        /// What is wrong.
        problem: &'static str,
        /// What to do.
        help: &'static str,
    },
    /// `pack` of named targets could not include every entry they need.
    #[error("cannot pack every entry the targets need:{}\n  help: run `relocache build` for them (a corrupt blob was quarantined and is rebuilt then), then pack again", .0.iter().map(|s| format!("\n  {} {}: {}", s.target.as_deref().unwrap_or("?"), s.key.short(), s.reason)).collect::<String>())]
    Incomplete(Vec<Skipped>),
}

impl From<DepotError> for ArchiveError {
    fn from(e: DepotError) -> Self {
        ArchiveError::Depot(e)
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        action,
        path,
        source,
    }
}

/// An entry named in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct EntryRef {
    /// Its key.
    pub key: Key,
    /// The project that stored it.
    pub project: String,
    /// The target that stored it.
    pub target: String,
}

impl EntryRef {
    fn of(e: &Entry) -> EntryRef {
        EntryRef {
            key: e.key,
            project: e.project.clone(),
            target: e.target.clone(),
        }
    }
}

/// An entry `pack` left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Its key.
    pub key: Key,
    /// `project/target`, when the entry could be read.
    pub target: Option<String>,
    /// Why it was left out.
    pub reason: String,
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// zstd level of the stream (1–19).
    pub level: i32,
    /// Fail instead of leaving out an entry whose blobs are missing or corrupt.
    pub strict: bool,
    /// [`pack_to_path`]: fsync the archive (and its directory) before returning.
    pub fsync: bool,
    /// Sign every entry packed (a `signatures-v1/` member each).
    pub signing: Option<crate::signing::SigningKey>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            level: DEFAULT_LEVEL,
            strict: false,
            fsync: false,
            signing: None,
        }
    }
}

/// What `pack` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PackSummary {
    /// Entries packed, by key.
    pub entries: Vec<EntryRef>,
    /// Number of blobs packed.
    pub blobs: u64,
    /// Their stored (possibly compressed) size.
    pub blob_bytes: u64,
    /// Size of the archive written.
    pub archive_bytes: u64,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
    /// `pack --current`: targets left out because they have no entry for
    /// their current inputs (empty otherwise).
    pub unbuilt: Vec<Unbuilt>,
    /// Where the key that signed every entry came from (`None`: unsigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<crate::signing::KeySource>,
}

//! relocache: a content-addressed, relocatable build-artifact cache.
//!
//! A project declares targets in `relocache.toml` ([`manifest`]). Each target's
//! [`key`] is the blake3 of what it reads — contents, never mtimes — with the
//! absolute project root replaced by `@project`. [`engine::build`] restores a target's
//! outputs from the [`depot`] when its key is stored, or runs it and stores the
//! outputs. The depot names only relative paths, so it can be copied anywhere:
//!
//! ```text
//! <depot>/
//!   DEPOT.toml                        format version, defaults; no absolute paths
//!   CACHEDIR.TAG                      so backup tools skip it
//!   objects-v1/ab/<blake3-hex>        blobs, zstd-compressed or raw
//!   entries-v2/ab/<key-hex>.toml      one entry per key
//!   projects-v2/<name>/<target>.toml  last key built or restored per target
//!   usage/                            append-only access logs (gc's LRU clock)
//!   locks/                            per-key build locks (`started`)
//!   tmp/                              staging: every write is tmp + fsync + rename
//! ```
//!
//! The library never prints: it returns `Serialize` summaries and reports
//! progress through [`report::Reporter`].

pub mod archive;
pub mod depfile;
pub mod depot;
pub mod digest;
pub mod discovered;
pub mod engine;
pub mod file_hash;
pub mod file_state;
pub mod follow;
pub mod gc;
pub mod graph;
pub mod hash_command;
pub mod init;
pub mod inputs;
pub mod inspect;
pub mod key;
pub mod manifest;
pub mod memo;
mod page;
mod par;
pub mod reloc;
pub mod relpath;
pub mod remote;
pub mod report;
pub mod signing;
pub mod stats;
pub mod tempname;
pub mod timings;
pub mod tools;
pub mod units;
pub mod verify;
pub mod walk;

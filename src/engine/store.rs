//! Storing a finished build: collect the declared outputs (files, whole
//! directories, symlinks), scan them for embedded absolute roots, write their
//! blobs, then publish the entry — blobs first, entry last. It must never
//! write a depot file except through `crate::depot`, nor publish an entry
//! whose blobs are not all there.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::depot::blobs::Durability;
use crate::depot::entries::{
    Entry, InputsSummary, OutputKind, OutputRecord, Reason, ReasonKind, ENTRY_SCHEMA,
};
use crate::depot::records::now_rfc3339;
use crate::depot::{Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::file_hash::hash_file_len;
use crate::file_state::Stamp;
use crate::memo::StatMemo;
use crate::par;
use crate::reloc::{scan_file, Needle};
use crate::relpath::RelPath;

/// Why outputs could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A declared output was not created.
    #[error("declared output `{0}` was not created by the command\n  help: make the command write it, or fix `outputs`")]
    Missing(RelPath),
    /// Reading an output failed.
    #[error("could not read output `{}`: {source}", .path.display())]
    Io {
        /// The output.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file name in an output directory is not UTF-8 or otherwise unusable.
    #[error("output `{0}`: {1}")]
    BadName(String, String),
}

/// Lists and hashes every declared output, sorted by path.
pub fn collect(
    root: &Path,
    declared: &[RelPath],
    memo: Option<&StatMemo>,
) -> Result<Vec<OutputRecord>, CollectError> {
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| CollectError::Io { path, source }
    };
    let mut records: Vec<OutputRecord> = Vec::new();
    let mut files: Vec<RelPath> = Vec::new();
    for d in declared {
        let abs = d.to_path(root);
        let md = match fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CollectError::Missing(d.clone()))
            }
            Err(e) => return Err(io(&abs)(e)),
        };
        if md.is_dir() {
            for item in walkdir::WalkDir::new(&abs)
                .follow_links(false)
                .sort_by_file_name()
            {
                let item = item.map_err(|e| CollectError::BadName(d.to_string(), e.to_string()))?;
                let rel = item
                    .path()
                    .strip_prefix(root)
                    .map_err(|e| CollectError::BadName(d.to_string(), e.to_string()))
                    .and_then(|r| {
                        RelPath::from_path(r)
                            .map_err(|e| CollectError::BadName(d.to_string(), e.to_string()))
                    })?;
                let ft = item.file_type();
                if ft.is_dir() {
                    let md = item.metadata().map_err(|e| CollectError::Io {
                        path: item.path().to_path_buf(),
                        source: e.into(),
                    })?;
                    records.push(dir_record(rel, md.permissions().mode()));
                } else if ft.is_symlink() {
                    records.push(symlink_record(item.path(), rel).map_err(io(item.path()))?);
                } else if ft.is_file() {
                    files.push(rel);
                }
            }
        } else if md.file_type().is_symlink() {
            records.push(symlink_record(&abs, d.clone()).map_err(io(&abs))?);
        } else {
            files.push(d.clone());
        }
    }
    // Large files are hashed on several threads anyway (hash_file_len).
    let parallel = files.len() >= par::MIN_ITEMS;
    let hashed: Result<Vec<OutputRecord>, CollectError> = par::map(&files, parallel, |rel| {
        let abs = rel.to_path(root);
        let md = fs::metadata(&abs).map_err(io(&abs))?;
        let (digest, size) = hash_file_len(&abs, md.len()).map_err(io(&abs))?;
        if let Some(m) = memo {
            // The stat was taken before hashing: any later edit changes it.
            m.record(rel, Stamp::of(&md), digest);
        }
        Ok(OutputRecord {
            path: rel.clone(),
            kind: OutputKind::File,
            digest: Some(digest),
            size,
            executable: md.permissions().mode() & 0o111 != 0,
            mode: Some(md.permissions().mode() & 0o777),
            target: None,
        })
    });
    records.extend(hashed?);
    records.sort_by(|a, b| a.path.cmp(&b.path));
    records.dedup_by(|a, b| a.path == b.path);
    Ok(records)
}

fn dir_record(path: RelPath, mode: u32) -> OutputRecord {
    OutputRecord {
        path,
        kind: OutputKind::Dir,
        digest: None,
        size: 0,
        executable: false,
        mode: Some(mode & 0o777),
        target: None,
    }
}

fn symlink_record(abs: &Path, path: RelPath) -> std::io::Result<OutputRecord> {
    let target = fs::read_link(abs)?;
    Ok(OutputRecord {
        path,
        kind: OutputKind::Symlink,
        digest: None,
        size: 0,
        executable: false,
        mode: None,
        target: Some(target.to_string_lossy().into_owned()),
    })
}

/// A reason an entry is not relocatable, with the full text for the user
/// (which may name absolute paths; the stored [`Reason`] never does).
#[derive(Debug, Clone)]
pub struct Finding {
    /// What is stored in the entry.
    pub reason: Reason,
    /// What the user is told at build time.
    pub message: String,
}

fn help(kind: &ReasonKind, root: &str) -> String {
    kind.help(root, "").unwrap_or_default()
}

/// Scans outputs for embedded absolute roots and checks symlinks.
pub fn relocatability(root: &Path, records: &[OutputRecord], needles: &[Needle]) -> Vec<Finding> {
    let files = records.iter().filter(|o| o.kind == OutputKind::File);
    let parallel = par::worth_it(files.clone().count(), files.map(|o| o.size).sum());
    let found: Vec<Option<Finding>> = par::map(records, parallel, |o| match o.kind {
        OutputKind::File => {
            let hit = scan_file(&o.path.to_path(root), needles).ok().flatten()?;
            let what = if hit.placeholder == "@depot" {
                "depot"
            } else {
                "project"
            };
            Some(Finding {
                reason: Reason {
                    kind: ReasonKind::EmbeddedPath,
                    path: Some(o.path.clone()),
                    offset: Some(hit.offset),
                    detail: format!(
                        "embeds the absolute {what} root ({}) at byte {}",
                        hit.placeholder, hit.offset
                    ),
                },
                message: format!(
                    "output `{}` embeds the absolute path `{}` at byte {}\n  help: {}",
                    o.path,
                    hit.text,
                    hit.offset,
                    help(&ReasonKind::EmbeddedPath, &hit.text)
                ),
            })
        }
        OutputKind::Symlink => {
            let t = o.target.as_deref().unwrap_or("");
            let escapes = !t.starts_with('/') && {
                // Relative to the link's directory (the root for a top-level link).
                let joined = match o.path.parent() {
                    Some(dir) => format!("{dir}/{t}"),
                    None => t.to_owned(),
                };
                // Empty: the project root itself, which is inside.
                !matches!(
                    RelPath::normalize(&joined),
                    Ok(_) | Err(crate::relpath::RelPathError::Empty)
                )
            };
            if t.starts_with('/') || escapes {
                let kind = if escapes {
                    ReasonKind::EscapingSymlink
                } else {
                    ReasonKind::AbsoluteSymlink
                };
                let help = help(&kind, "");
                Some(Finding {
                        reason: Reason {
                            kind,
                            path: Some(o.path.clone()),
                            offset: None,
                            detail: if escapes {
                                "symlink points outside the project".into()
                            } else {
                                "symlink target is an absolute path".into()
                            },
                        },
                        message: format!(
                            "output symlink `{}` points to `{t}`, which is not inside the project\n  help: {help}",
                            o.path
                        ),
                    })
            } else {
                None
            }
        }
        OutputKind::Dir => None,
    });
    let mut found: Vec<Finding> = found.into_iter().flatten().collect();
    found.sort_by(|a, b| a.reason.path.cmp(&b.reason.path));
    found
}

/// Everything needed to publish an entry.
pub struct StoreRequest<'a> {
    /// Project name.
    pub project: &'a str,
    /// Target name.
    pub target: &'a str,
    /// The key.
    pub key: Key,
    /// Build wall time in milliseconds.
    pub duration_ms: u64,
    /// Collected outputs.
    pub outputs: Vec<OutputRecord>,
    /// Why not relocatable.
    pub reasons: Vec<Reason>,
    /// Captured stdout.
    pub stdout: &'a [u8],
    /// Captured stderr.
    pub stderr: &'a [u8],
    /// What went into the key.
    pub summary: &'a InputsSummary,
    /// With a depfile: the base key the entry is found by.
    pub base: Option<Key>,
    /// With a depfile: what it listed, sorted by path.
    pub discovered: Vec<crate::discovered::DiscoveredInput>,
    /// Where it was built.
    pub root_digest: crate::digest::RootDigest,
}

/// Writes every blob, then the entry. Returns the entry.
pub fn store(depot: &Depot, root: &Path, req: StoreRequest<'_>) -> Result<Entry, DepotError> {
    // Many outputs: write them unsynced and make them durable with one
    // syncfs before the entry; a few: fsync each (cheaper than a syncfs).
    let files = req
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::File)
        .count();
    let durability = if files > 4 {
        Durability::Batched
    } else {
        Durability::Now
    };
    let bytes = req.outputs.iter().map(|o| o.size).sum();
    let put_all = || -> Result<(Digest, Option<Digest>, Option<Digest>), DepotError> {
        let put: Result<(), DepotError> =
            par::map(&req.outputs, par::worth_it(files, bytes), |o| {
                match o.kind {
                    OutputKind::File => depot
                        .put_file_with(&o.path.to_path(root), o.digest, durability)
                        .map(|_| ()),
                    _ => Ok(()),
                }
            });
        put?;
        let log = |b: &[u8]| -> Result<Option<Digest>, DepotError> {
            if b.is_empty() {
                Ok(None)
            } else {
                depot.put_bytes(b).map(Some)
            }
        };
        let summary = serde_json::to_vec(req.summary).expect("summaries serialize");
        let inputs = depot.put_bytes_with(&summary, durability)?;
        let stdout = log(req.stdout)?;
        let stderr = log(req.stderr)?;
        if durability == Durability::Batched {
            depot.sync_batch()?;
        }
        Ok((inputs, stdout, stderr))
    };
    let (inputs, stdout, stderr) = put_all()?;
    let entry = Entry {
        schema: ENTRY_SCHEMA,
        project: req.project.to_owned(),
        target: req.target.to_owned(),
        key: req.key,
        created: now_rfc3339(),
        duration_ms: req.duration_ms,
        relocatable: req.reasons.is_empty(),
        root_digest: Some(req.root_digest),
        reasons: req.reasons.clone(),
        stdout,
        stderr,
        inputs,
        base: req.base,
        outputs: req.outputs.clone(),
        discovered: req.discovered.clone(),
    };
    // A blob this store found already there (and so did not write) may have
    // been deleted by a gc since: put them all again, once.
    match depot.write_entry(&entry) {
        Err(DepotError::MissingBlob(_)) => {
            put_all()?;
            depot.write_entry(&entry)?;
        }
        other => other?,
    }
    tracing::debug!(outputs = entry.outputs.len(), bytes, "stored");
    Ok(entry)
}

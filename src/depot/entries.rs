//! Entries: the record stored under a key (`entries-v2/ab/<key>.toml`) —
//! which blobs make up the outputs, the replayed logs, relocatability, and a
//! blob holding the inputs summary for `explain`. An entry is written last,
//! after every blob it names is durable, and ends with a checksum of its own
//! bytes ([`super::checksum`]): an entry failing it is damaged, never restored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{checksum, write, Depot, DepotError};
use crate::digest::{Digest, Key, RootDigest};
use crate::discovered::DiscoveredInput;
use crate::file_state::FileState;
use crate::relpath::RelPath;

/// Version of the entry format. 2: a final `checksum = "…"` line.
pub const ENTRY_SCHEMA: u32 = 2;

/// Why an entry's text cannot be used: it is damaged, from another
/// relocache, or does not restore what it must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Written by a newer relocache.
    #[error("entry schema {0} is newer than this relocache supports ({ENTRY_SCHEMA}); upgrade relocache")]
    Newer(u32),
    /// Written by an older relocache.
    #[error("entry schema {0} is older than this relocache reads ({ENTRY_SCHEMA})")]
    Older(u32),
    /// The checksum line is missing or does not match.
    #[error("the entry fails its checksum: {0}")]
    Checksum(checksum::Unsealed),
    /// Not an entry's TOML (the parser's message).
    #[error("{0}")]
    Syntax(String),
    /// Two outputs with the same path.
    #[error("output `{0}` is listed twice")]
    ListedTwice(RelPath),
    /// A file without a digest or a symlink without a link text.
    #[error("output `{0}` lacks its digest or link text")]
    Incomplete(RelPath),
    /// Permission bits absent, out of range, or against the executable bit.
    #[error("output `{0}` lacks its permission bits, or they contradict its executable bit")]
    BadMode(RelPath),
    /// An output below a file or a symlink of the same entry.
    #[error("output `{output}` lies below `{parent}`, which is not a directory")]
    BelowNonDir {
        /// The output.
        output: RelPath,
        /// Its ancestor that is a file or a symlink.
        parent: String,
    },
    /// A path that is not one of the target's declared outputs nor below one.
    #[error("it would restore `{output}`, which is not an output of `{target}`")]
    NotDeclared {
        /// The path.
        output: RelPath,
        /// The target.
        target: String,
    },
    /// A path below a declared output whose directory the entry does not hold.
    #[error("it would restore `{output}` without restoring its directory `{dir}`")]
    NoDirectory {
        /// The path.
        output: RelPath,
        /// The missing directory.
        dir: String,
    },
    /// A declared output of the target the entry does not restore.
    #[error("it does not restore `{output}`, a declared output of `{target}`")]
    NotCovered {
        /// The declared output.
        output: RelPath,
        /// The target.
        target: String,
    },
}

/// One stored execution of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`ENTRY_SCHEMA`] when written.
    pub schema: u32,
    /// The project that stored it.
    pub project: String,
    /// The target that stored it.
    pub target: String,
    /// Its key (also its file name).
    pub key: Key,
    /// UTC creation time, RFC 3339.
    pub created: String,
    /// How long the command ran, in milliseconds.
    pub duration_ms: u64,
    /// False when an output or input ties it to one location.
    pub relocatable: bool,
    /// Where it was built ([`RootDigest`]: a digest, never the path), so a
    /// hit of a non-relocatable entry at another location can say so.
    /// Absent in entries written before it existed: where is then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_digest: Option<RootDigest>,
    /// Why it is not relocatable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Captured standard output, replayed on a hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Digest>,
    /// Captured standard error, replayed on a hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Digest>,
    /// Blob holding the JSON [`InputsSummary`].
    pub inputs: Digest,
    /// For a target with a `depfile`: the base key it was looked up by (its
    /// `key` then adds the discovered inputs, see [`crate::key`]). Absent
    /// otherwise, so entries written before depfiles read unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Key>,
    /// Every output file, directory and symlink, sorted by path.
    #[serde(default)]
    pub outputs: Vec<OutputRecord>,
    /// The files its depfile named, with their digests, sorted by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<DiscoveredInput>,
}

/// Why an entry cannot move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// What ties the entry to its location.
    pub kind: ReasonKind,
    /// The output or input concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<RelPath>,
    /// Byte offset of an embedded path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Human explanation; absolute paths appear only as `@project`/`@depot`.
    pub detail: String,
}

/// What ties an entry to its location, stored kebab-case
/// (`embedded-path`, …). A kind this relocache does not know (written by a
/// newer one) is kept as [`ReasonKind::Other`] with its text, so an entry
/// reads and re-renders byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ReasonKind {
    /// An output file embeds the absolute project or depot root.
    EmbeddedPath,
    /// An output symlink points to an absolute path.
    AbsoluteSymlink,
    /// An output symlink climbs out of the project with `..`.
    EscapingSymlink,
    /// An input tracked by size and mtime (`track_content = false`).
    UntrackedInput,
    /// A kind this relocache does not know, as stored.
    Other(String),
}

impl ReasonKind {
    /// The stored name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::EmbeddedPath => "embedded-path",
            Self::AbsoluteSymlink => "absolute-symlink",
            Self::EscapingSymlink => "escaping-symlink",
            Self::UntrackedInput => "untracked-input",
            Self::Other(s) => s,
        }
    }

    /// Whether it names the location the entry was built at (an embedded
    /// root, a symlink out of the project), so that restoring it elsewhere
    /// leaves outputs pointing at the old place. An untracked input does
    /// not; a kind this relocache does not know is assumed to.
    pub fn names_location(&self) -> bool {
        !matches!(self, Self::UntrackedInput)
    }

    /// How to fix it: the one text both the build warning and `verify`
    /// give. `root` is the absolute root an [`EmbeddedPath`](Self::EmbeddedPath)
    /// embeds, `path` the input of an [`UntrackedInput`](Self::UntrackedInput);
    /// neither is used otherwise. `None` for a kind without advice.
    pub fn help(&self, root: &str, path: &str) -> Option<String> {
        match self {
            Self::EmbeddedPath => Some(format!(
                "build with relative paths, e.g. `-ffile-prefix-map={root}=.` for C/C++, `--remap-path-prefix={root}=.` for Rust, or write paths relative to the project"
            )),
            Self::AbsoluteSymlink | Self::EscapingSymlink => {
                Some("make the link relative to its directory (e.g. `ln -sr`)".to_owned())
            }
            Self::UntrackedInput => Some(format!(
                "drop `track_content = false` for `{path}` so its content is hashed instead"
            )),
            Self::Other(_) => None,
        }
    }
}

impl From<String> for ReasonKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "embedded-path" => Self::EmbeddedPath,
            "absolute-symlink" => Self::AbsoluteSymlink,
            "escaping-symlink" => Self::EscapingSymlink,
            "untracked-input" => Self::UntrackedInput,
            _ => Self::Other(s),
        }
    }
}

impl From<ReasonKind> for String {
    fn from(k: ReasonKind) -> Self {
        match k {
            ReasonKind::Other(s) => s,
            k => k.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an output path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A regular file (`digest`, `size`, `executable`).
    File,
    /// A directory.
    Dir,
    /// A symbolic link (`target`).
    Symlink,
}

/// One output path of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Relative to the project root.
    pub path: RelPath,
    /// File, directory or symlink.
    pub kind: OutputKind,
    /// Content blob of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Size of a file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Execute bit of a file.
    #[serde(default, skip_serializing_if = "is_false")]
    pub executable: bool,
    /// Permission bits (`mode & 0o777`: user/group/other rwx, never
    /// setuid/setgid/sticky) of a file or directory, restored exactly;
    /// required for both (see [`Entry::check_outputs`]), absent for a
    /// symlink. Written as an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Link text of a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl OutputRecord {
    /// The permission bits a restore gives this file or directory. Entries
    /// read from disk are checked to carry them; the fallback serves only
    /// records built in memory without one.
    pub fn perm(&self) -> u32 {
        self.mode.unwrap_or(match self.kind {
            OutputKind::File if !self.executable => 0o644,
            _ => 0o755,
        }) & 0o777
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Everything that went into a key, kept so `explain` can diff two builds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputsSummary {
    /// `run` (rooted), when the target uses a shell line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `command` (rooted), when the target uses argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Env name → value (rooted), `null` when unset.
    pub env: BTreeMap<String, Option<String>>,
    /// Tool name → content digest.
    pub tools: BTreeMap<String, Digest>,
    /// `version`.
    pub version: i64,
    /// Input path → state.
    pub files: BTreeMap<RelPath, FileState>,
    /// Dep name → outputs digest.
    pub deps: BTreeMap<String, Digest>,
    /// Declared outputs.
    pub outputs: Vec<RelPath>,
}

impl Entry {
    /// The digest dependents use for early cutoff: a hash of each output's
    /// path, kind, content and mode, independent of the key.
    pub fn outputs_digest(&self) -> Digest {
        outputs_digest(&self.outputs)
    }

    /// Whether restoring it at the root whose digest is `here` leaves
    /// outputs naming another location: it is not relocatable for a reason
    /// that names its location, and it records being built at another root.
    /// An entry without a root digest (written before they existed) is
    /// unknown, so false.
    pub fn built_elsewhere(&self, here: &RootDigest) -> bool {
        !self.relocatable
            && self.root_digest.is_some_and(|d| d != *here)
            && self.reasons.iter().any(|r| r.kind.names_location())
    }

    /// The reasons that name its location, as `kind `path``, for messages.
    pub fn location_reasons(&self) -> Vec<String> {
        self.reasons
            .iter()
            .filter(|r| r.kind.names_location())
            .map(|r| match &r.path {
                Some(p) => format!("{} `{p}`", r.kind),
                None => r.kind.to_string(),
            })
            .collect()
    }

    /// The path set of its discovered inputs (sorted, as stored).
    pub fn discovered_paths(&self) -> Vec<crate::discovered::DiscoveredPath> {
        self.discovered.iter().map(|d| d.path.clone()).collect()
    }

    /// Every blob this entry references.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.outputs.iter().filter_map(|o| o.digest).collect();
        v.extend(self.stdout);
        v.extend(self.stderr);
        v.push(self.inputs);
        v.sort();
        v.dedup();
        v
    }
}

/// See [`Entry::outputs_digest`].
pub fn outputs_digest(outputs: &[OutputRecord]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("relocache outputs v1");
    for o in outputs {
        h.update(&(o.path.as_str().len() as u64).to_le_bytes());
        h.update(o.path.as_str().as_bytes());
        match o.kind {
            OutputKind::File => {
                h.update(b"F");
                h.update(&o.digest.map(|d| d.0).unwrap_or_default());
                h.update(&[o.executable as u8]);
                h.update(&o.perm().to_le_bytes());
            }
            OutputKind::Dir => {
                h.update(b"D");
                h.update(&o.perm().to_le_bytes());
            }
            OutputKind::Symlink => {
                let t = o.target.as_deref().unwrap_or("");
                h.update(b"L");
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
        }
    }
    h.finalize().into()
}

impl Depot {
    /// Where the entry for `key` lives.
    pub fn entry_path(&self, key: &Key) -> PathBuf {
        self.root.join(super::layout::entry(key))
    }

    /// The entry for `key`, if present.
    pub fn read_entry(&self, key: &Key) -> Result<Option<Entry>, DepotError> {
        let path = self.entry_path(key);
        let text = match super::read_regular_text(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DepotError::io("read entry", &path)(e)),
        };
        let entry = parse_entry(&text).map_err(|e| DepotError::Damaged {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if entry.key != *key {
            return Err(DepotError::Damaged {
                path,
                message: format!("it records key {} under another name", entry.key),
            });
        }
        Ok(Some(entry))
    }

    /// Publishes `entry`. Its blobs must already be stored.
    ///
    /// Under the shared gc lock it first checks that every blob the entry
    /// names is there: a blob a writer found already present (and so did
    /// not write) may have been deleted by a concurrent gc, which reads the
    /// entries present and deletes blobs under the exclusive lock. Either
    /// this entry is published first and gc keeps its blobs, or gc goes
    /// first and this fails with [`DepotError::MissingBlob`].
    pub fn write_entry(&self, entry: &Entry) -> Result<(), DepotError> {
        let text = render_entry(entry);
        let _gc = self.gc_lock(false);
        if let Some(d) = self.first_missing_blob(entry.blobs()) {
            return Err(DepotError::MissingBlob(d));
        }
        write::write_bytes(self, &self.entry_path(&entry.key), text.as_bytes())
    }

    /// Moves the damaged entry for `key` to `quarantine/`, where it no
    /// longer shadows a rebuild and stays for inspection. Best effort.
    pub fn quarantine_entry(&self, key: &Key) {
        let to = self.quarantine_path(&format!("{}.toml", key.to_hex()));
        let _ = std::fs::rename(self.entry_path(key), to);
    }

    /// Removes the entry for `key` (blobs stay until gc).
    pub fn remove_entry(&self, key: &Key) -> Result<bool, DepotError> {
        let path = self.entry_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(DepotError::io("remove entry", &path)(e)),
        }
    }

    /// Reads the inputs summary blob of `entry`.
    pub fn read_summary(&self, entry: &Entry) -> Result<InputsSummary, DepotError> {
        let bytes = self.read_blob(&entry.inputs)?;
        serde_json::from_slice(&bytes).map_err(|e| DepotError::Damaged {
            path: self.blob_path(&entry.inputs),
            message: format!("inputs summary: {e}"),
        })
    }
}

impl Entry {
    /// The shape every reader relies on: no path twice, a digest for every
    /// file and a link text for every symlink, and nothing below a file or
    /// a symlink of the same entry (restoring it would write through the
    /// link, wherever it points). An archive, a remote or a damaged depot
    /// may hand over any text; an entry failing this is damaged.
    pub fn check_outputs(&self) -> Result<(), EntryError> {
        let mut kinds: HashMap<&str, OutputKind> = HashMap::with_capacity(self.outputs.len());
        for o in &self.outputs {
            if kinds.insert(o.path.as_str(), o.kind).is_some() {
                return Err(EntryError::ListedTwice(o.path.clone()));
            }
            let complete = match o.kind {
                OutputKind::File => o.digest.is_some(),
                OutputKind::Symlink => o.target.is_some(),
                OutputKind::Dir => true,
            };
            if !complete {
                return Err(EntryError::Incomplete(o.path.clone()));
            }
            // An entry without modes must not restore a guessed one.
            let mode_ok = match (o.kind, o.mode) {
                (OutputKind::Symlink, _) => true,
                (_, None) => false,
                (OutputKind::File, Some(m)) => m <= 0o777 && (m & 0o111 != 0) == o.executable,
                (OutputKind::Dir, Some(m)) => m <= 0o777,
            };
            if !mode_ok {
                return Err(EntryError::BadMode(o.path.clone()));
            }
        }
        for o in &self.outputs {
            let parents = o.path.self_and_ancestors();
            if let Some(p) = parents
                .filter(|p| *p != o.path.as_str())
                .find(|p| kinds.get(p).is_some_and(|k| *k != OutputKind::Dir))
            {
                return Err(EntryError::BelowNonDir {
                    output: o.path.clone(),
                    parent: p.to_owned(),
                });
            }
        }
        Ok(())
    }
}

impl Entry {
    /// Checks that the entry restores every one of its target's `declared`
    /// outputs, as a file, directory or symlink. A command that did not
    /// create a declared output fails and stores nothing, so a sound entry
    /// always covers them; one that does not (its `[[outputs]]` lost) would
    /// be a hit that leaves an output missing, and is damaged.
    pub fn check_covers(&self, declared: &[RelPath]) -> Result<(), EntryError> {
        let have: HashSet<&str> = self.outputs.iter().map(|o| o.path.as_str()).collect();
        match declared.iter().find(|d| !have.contains(d.as_str())) {
            Some(d) => Err(EntryError::NotCovered {
                output: d.clone(),
                target: self.target.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// An entry's text as stored: TOML sealed with its checksum line.
pub fn render_entry(entry: &Entry) -> String {
    checksum::seal(&toml::to_string(entry).expect("entries serialize"))
}

/// Parses an entry's text, refusing newer schemas and any text failing its
/// checksum. The schema number is probed separately only when the full
/// parse fails, so a newer entry gets the "upgrade relocache" message and
/// the common case parses once.
pub fn parse_entry(text: &str) -> Result<Entry, EntryError> {
    #[derive(Deserialize)]
    struct Probe {
        schema: u32,
    }
    let text = match checksum::open(text) {
        Ok(body) => body,
        Err(why) => {
            return match toml::from_str::<Probe>(text) {
                Ok(p) if p.schema > ENTRY_SCHEMA => Err(EntryError::Newer(p.schema)),
                _ => Err(EntryError::Checksum(why)),
            }
        }
    };
    match toml::from_str::<Entry>(text) {
        Ok(e) if e.schema > ENTRY_SCHEMA => Err(EntryError::Newer(e.schema)),
        Ok(e) if e.schema < ENTRY_SCHEMA => Err(EntryError::Older(e.schema)),
        Ok(e) => e.check_outputs().map(|()| e),
        Err(err) => match toml::from_str::<Probe>(text) {
            Ok(p) if p.schema > ENTRY_SCHEMA => Err(EntryError::Newer(p.schema)),
            _ => Err(EntryError::Syntax(err.message().to_owned())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            schema: ENTRY_SCHEMA,
            project: "demo".into(),
            target: "lib".into(),
            key: Key(Digest::of(b"key")),
            created: "2026-11-21T00:00:00Z".into(),
            duration_ms: 1234,
            relocatable: false,
            root_digest: None,
            reasons: vec![Reason {
                kind: ReasonKind::EmbeddedPath,
                path: Some(RelPath::new("build/lib.o").unwrap()),
                offset: Some(42),
                detail: "contains @project".into(),
            }],
            stdout: Some(Digest::of(b"out")),
            stderr: None,
            inputs: Digest::of(b"inputs"),
            base: None,
            discovered: vec![],
            outputs: vec![
                OutputRecord {
                    path: RelPath::new("build").unwrap(),
                    kind: OutputKind::Dir,
                    digest: None,
                    size: 0,
                    executable: false,
                    mode: Some(0o755),
                    target: None,
                },
                OutputRecord {
                    path: RelPath::new("build/app").unwrap(),
                    kind: OutputKind::File,
                    digest: Some(Digest::of(b"app")),
                    size: 3,
                    executable: true,
                    mode: Some(0o750),
                    target: None,
                },
                OutputRecord {
                    path: RelPath::new("build/link").unwrap(),
                    kind: OutputKind::Symlink,
                    digest: None,
                    size: 0,
                    executable: false,
                    mode: None,
                    target: Some("app".into()),
                },
            ],
        }
    }

    /// Golden file: the entry format on disk. Changing it needs ENTRY_SCHEMA + 1.
    #[test]
    fn entry_format_is_pinned() {
        let text = render_entry(&sample());
        let golden = include_str!("../../tests/golden/entry-v2.toml");
        assert_eq!(text, golden);
        assert_eq!(parse_entry(golden).unwrap(), sample());
    }

    /// The root digest is an optional field of schema 2: an entry without
    /// it (every entry written before, the golden above) reads as unknown,
    /// and one with it is pinned here.
    #[test]
    fn the_root_digest_is_an_optional_field() {
        let mut e = sample();
        e.root_digest = Some(RootDigest::of(std::path::Path::new("/home/me/proj")));
        let text = render_entry(&e);
        let golden = include_str!("../../tests/golden/entry-v2-root-digest.toml");
        assert_eq!(text, golden);
        assert_eq!(parse_entry(golden).unwrap(), e);
        assert_eq!(
            parse_entry(include_str!("../../tests/golden/entry-v2.toml"))
                .unwrap()
                .root_digest,
            None
        );
    }

    #[test]
    fn only_a_non_relocatable_entry_from_another_root_is_built_elsewhere() {
        let here = RootDigest::of(std::path::Path::new("/w/proj"));
        let there = RootDigest::of(std::path::Path::new("/home/me/proj"));
        let mut e = sample();
        assert!(!e.built_elsewhere(&here), "unknown root");
        e.root_digest = Some(there);
        assert!(e.built_elsewhere(&here));
        assert!(!e.built_elsewhere(&there), "same place");
        e.reasons[0].kind = ReasonKind::UntrackedInput;
        assert!(!e.built_elsewhere(&here), "names no location");
        e.reasons[0].kind = ReasonKind::AbsoluteSymlink;
        assert!(e.built_elsewhere(&here));
        e.relocatable = true;
        e.reasons.clear();
        assert!(!e.built_elsewhere(&here), "relocatable");
    }

    #[test]
    fn newer_schema_is_refused_with_advice() {
        let text = toml::to_string(&sample())
            .unwrap()
            .replace("schema = 2", "schema = 7");
        assert!(parse_entry(&text)
            .unwrap_err()
            .to_string()
            .contains("upgrade relocache"));
        assert!(parse_entry(&checksum::seal(&text))
            .unwrap_err()
            .to_string()
            .contains("upgrade relocache"));
    }

    /// Schema 1 entries carry no checksum: never trusted.
    #[test]
    fn an_unsealed_or_older_entry_is_damaged() {
        let plain = toml::to_string(&sample()).unwrap();
        assert!(parse_entry(&plain)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let old = checksum::seal(&plain.replace("schema = 2", "schema = 1"));
        assert!(parse_entry(&old).unwrap_err().to_string().contains("older"));
        let v1 = include_str!("../../tests/golden/entry-v1.toml");
        assert!(parse_entry(v1).is_err());
    }

    #[test]
    fn an_entry_must_cover_its_declared_outputs() {
        let e = sample();
        let rel = |p: &str| RelPath::new(p).unwrap();
        assert!(e.check_covers(&[rel("build")]).is_ok());
        assert!(e
            .check_covers(&[rel("build/app"), rel("build/link")])
            .is_ok());
        let err = e.check_covers(&[rel("build/app"), rel("build/lib.o")]);
        assert!(err.unwrap_err().to_string().contains("build/lib.o"));
    }

    #[test]
    fn outputs_digest_ignores_key_and_time() {
        let a = sample();
        let mut b = sample();
        b.key = Key(Digest::of(b"other"));
        b.created = "2030-01-01T00:00:00Z".into();
        assert_eq!(a.outputs_digest(), b.outputs_digest());
        b.outputs[1].executable = false;
        assert_ne!(a.outputs_digest(), b.outputs_digest());
    }

    #[test]
    fn outputs_digest_sees_a_mode_change_alone() {
        let a = sample();
        let mut file = sample();
        file.outputs[1].mode = Some(0o700);
        assert_ne!(a.outputs_digest(), file.outputs_digest());
        let mut dir = sample();
        dir.outputs[0].mode = Some(0o700);
        assert_ne!(a.outputs_digest(), dir.outputs_digest());
    }

    #[test]
    fn an_entry_without_modes_is_damaged() {
        let text = toml::to_string(&sample()).unwrap();
        for (from, to) in [
            ("mode = 493\n", ""),
            ("mode = 488\n", ""),
            ("mode = 488\n", "mode = 420\n"),
            ("mode = 488\n", "mode = 2541\n"),
        ] {
            assert!(text.contains(from));
            // Sealed again: only the mode check can refuse it.
            let damaged = checksum::seal(&text.replacen(from, to, 1));
            assert!(
                parse_entry(&damaged)
                    .unwrap_err()
                    .to_string()
                    .contains("permission bits"),
                "{from} -> {to}"
            );
        }
    }
}

//! The checks of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), one
//! function per target, so that `tests/fuzz_regressions.rs` runs every
//! committed corpus input and every crash found through the very same code
//! under plain `cargo test`. Each takes any bytes and panics when the code
//! under test breaks a rule (a panic of its own, a wrong result, a write
//! where it must not write); that panic is the finding. Hidden from the docs
//! and not part of the API: it may change with any release. Never used by
//! the binary; reaches nothing a caller of the real API could not, except
//! [`classify_archive_member`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::archive::{unpack as unpack_archive, UnpackOptions};
use crate::depot::checksum::seal;
use crate::depot::entries::{parse_entry, render_entry};
use crate::depot::variants::{parse_variants, render_variants};
use crate::depot::Depot;
use crate::hash_command::hash_paths;
use crate::manifest::{Manifest, ManifestError};
use crate::report::Silent;

/// Classifies one archive member path as `unpack` does (see
/// [`crate::archive`] for the accepted names): the layout form it names,
/// spelled as `Debug` text, or why it is refused.
pub fn classify_archive_member(path: &str, is_dir: bool) -> Result<String, String> {
    crate::archive::members::classify(path, is_dir).map(|m| format!("{m:?}"))
}

/// The files `manifest`'s templates expand over: c-demo's tree.
const MANIFEST_FILES: &[&str] = &[
    "relocache.toml",
    "gen.py",
    "data/squares.csv",
    "src/demo.h",
    "src/greet.c",
    "src/main.c",
    "src/squares.c",
    "src/sub/deep.c",
];

/// The manifest parser on any text: an error is always a located
/// `relocache.toml:LINE:COL` error, never a panic. Templates expand over a
/// fixed file list, so nothing is read from disk.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let root = Path::new("/nonexistent/fuzz-project");
    let file = root.join("relocache.toml");
    match Manifest::parse_with_files(&text, &file, root, MANIFEST_FILES) {
        Ok(m) => {
            for (name, t) in &m.targets {
                assert_eq!(name, &t.name, "a target filed under another name");
            }
        }
        Err(ManifestError::Invalid { file: f, .. }) => assert_eq!(f, file),
        Err(e) => panic!("a manifest text gave an error without a location: {e}"),
    }
}

/// The entry and variants-record parsers on any text. The first byte picks
/// whether the rest is taken as is (the seal must match, as on disk) or
/// sealed first (so mutations reach the TOML and shape checks behind the
/// seal). Whatever parses must render to text that parses to the same value.
pub fn entry(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut text = String::from_utf8_lossy(rest).into_owned();
    if mode & 1 == 1 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text = seal(&text);
    }
    if let Ok(entry) = parse_entry(&text) {
        let again = parse_entry(&render_entry(&entry)).expect("a rendered entry parses");
        assert_eq!(entry, again, "an entry changed through render and parse");
    }
    if let Ok(v) = parse_variants(&text) {
        let again = parse_variants(&render_variants(&v)).expect("a rendered record parses");
        assert_eq!(
            v, again,
            "a variants record changed through render and parse"
        );
    }
}

/// Archive member classification on any path: whatever it accepts is a
/// normalized relative path inside the depot layout an archive carries.
/// The first byte says whether the member is a directory.
pub fn archive_member(data: &[u8]) {
    const TOPS: &[&str] = &[
        "objects-v1",
        "entries-v2",
        "variants-v1",
        "CACHEDIR.TAG",
        "DEPOT.toml",
    ];
    let Some((dir, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let is_dir = dir & 1 == 1;
    if classify_archive_member(path, is_dir).is_ok() {
        let trimmed = if is_dir {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };
        assert!(
            !trimmed.starts_with('/') && !trimmed.contains('\\'),
            "accepted {path:?}"
        );
        let parts: Vec<&str> = trimmed.split('/').collect();
        assert!(
            parts
                .iter()
                .all(|c| !c.is_empty() && *c != "." && *c != ".."),
            "accepted a path that is not normalized: {path:?}"
        );
        assert!(TOPS.contains(&parts[0]), "accepted {path:?}");
        assert!(parts.len() <= 3, "accepted {path:?}");
    }
}

const CANARY: &str = "canary: unpack must never write here\n";

/// The directory `unpack` works in: `RELOCACHE_FUZZ_SCRATCH` when set (so
/// CI can look at it afterwards), a temporary directory otherwise; removed
/// at exit only in the second case.
fn unpack_scratch() -> &'static Path {
    static SCRATCH: OnceLock<(Option<tempfile::TempDir>, PathBuf)> = OnceLock::new();
    let (_, root) = SCRATCH.get_or_init(|| {
        let dir = match std::env::var_os("RELOCACHE_FUZZ_SCRATCH") {
            Some(p) => {
                let p = PathBuf::from(p);
                std::fs::create_dir_all(&p).expect("creating RELOCACHE_FUZZ_SCRATCH");
                tempfile::Builder::new()
                    .prefix("unpack-")
                    .tempdir_in(p)
                    .expect("a scratch directory")
                    .keep()
            }
            None => {
                let t = tempfile::tempdir().expect("a scratch directory");
                let p = t.path().to_path_buf();
                return (Some(t), p);
            }
        };
        (None, dir)
    });
    std::fs::write(root.join("canary"), CANARY).expect("writing the canary");
    root
}

/// Every path below `root` other than `root/depot` (and what is below it)
/// and the canary.
fn outside_depot(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.path() != root.join("depot"))
        .map(|e| e.expect("the scratch directory is readable").into_path())
        .filter(|p| p != &root.join("canary"))
        .collect()
}

/// `unpack` on any bytes, into a fresh scratch depot each run. The first
/// byte picks the form: odd, the rest is a tar stream compressed here first
/// (so mutations reach member headers, names and contents); even, the rest
/// is the compressed stream itself (zstd framing). Checked after every run:
/// nothing was written in the scratch directory outside the depot (a canary
/// file beside it is untouched), and every entry the unpack published reads
/// back with all its blobs verified.
pub fn unpack(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 1 {
        zstd::encode_all(rest, 1).expect("compressing in memory")
    } else {
        rest.to_vec()
    };
    let root = unpack_scratch();
    let depot_dir = root.join("depot");
    if depot_dir.exists() {
        std::fs::remove_dir_all(&depot_dir).expect("removing the last scratch depot");
    }
    let depot = Depot::open_or_create(&depot_dir).expect("a scratch depot");
    let opts = UnpackOptions {
        max_size: 16 << 20,
        ..UnpackOptions::default()
    };
    let result = unpack_archive(&depot, stream.as_slice(), &opts, &Silent);
    assert_eq!(
        outside_depot(root),
        Vec::<PathBuf>::new(),
        "unpack wrote outside the depot"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("canary")).ok().as_deref(),
        Some(CANARY),
        "unpack changed the canary"
    );
    if let Ok(summary) = result {
        for added in &summary.entries_added {
            let entry = depot
                .read_entry(&added.key)
                .expect("a published entry reads")
                .expect("a published entry is there");
            for d in entry.blobs() {
                depot
                    .read_blob(&d)
                    .expect("a published entry's blob verifies");
            }
        }
    }
}

/// The tree `hash_glob` hashes, and its listing (path, size) as made.
struct HashTree {
    _dir: tempfile::TempDir,
    base: PathBuf,
    listing: Vec<(PathBuf, u64)>,
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.expect("the scratch tree is readable");
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.path().to_path_buf(), len)
        })
        .collect()
}

fn hash_tree() -> &'static HashTree {
    static TREE: OnceLock<HashTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let base = dir.path().join("base");
        for (path, text) in [
            (".gitignore", "build/\n*.o\n"),
            ("relocache.toml", "[project]\nname = \"x\"\n"),
            ("src/main.c", "int main(void) { return 0; }\n"),
            ("src/lib/a.c", "int a;\n"),
            ("src/lib/b.h", "extern int a;\n"),
            ("src/x.o", "object\n"),
            ("build/out", "ignored\n"),
            ("data/{braces}.txt", "braces\n"),
            ("data/[set].txt", "brackets\n"),
        ] {
            let p = base.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("a directory");
            std::fs::write(&p, text).expect("a file");
        }
        std::os::unix::fs::symlink("src/main.c", base.join("link")).expect("a link");
        std::os::unix::fs::symlink("../../outside", base.join("src/escape")).expect("a link");
        let listing = listing(dir.path());
        HashTree {
            _dir: dir,
            base,
            listing,
        }
    })
}

/// `relocache hash` argument handling (globs, literal paths, directories)
/// on any argument list, one argument a line, over a small fixed tree
/// (files, ignored files, symlinks, names with glob characters). Every file
/// a result names is below the base, the digest is the same twice, and
/// hashing never writes: the tree is the same after every run.
pub fn hash_glob(data: &[u8]) {
    let tree = hash_tree();
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text.lines().take(8).map(str::to_owned).collect();
    if let Ok(hash) = hash_paths(&tree.base, &args) {
        for f in &hash.files {
            let p = f.path.to_path(&tree.base);
            assert!(p.starts_with(&tree.base), "{p:?} is not below the base");
            assert!(p.symlink_metadata().is_ok(), "{p:?} does not exist");
        }
        let again = hash_paths(&tree.base, &args).expect("hashing twice");
        assert_eq!(hash.digest, again.digest, "two hashes of one tree differ");
    }
    let parent = tree.base.parent().expect("the base has a parent");
    assert_eq!(listing(parent), tree.listing, "hash changed the tree");
}

/// The Make-syntax depfile parser on any bytes: no panic, and what it
/// returns is deterministic and holds no empty name.
pub fn depfile(data: &[u8]) {
    if let Ok(prereqs) = crate::depfile::parse(data) {
        assert!(prereqs.iter().all(|p| !p.is_empty()), "{prereqs:?}");
        assert_eq!(crate::depfile::parse(data).ok(), Some(prereqs));
    }
}

//! Test helpers: a project in a temp dir, driven through the real binary.
#![allow(dead_code, unused_macros, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temp dir holding a project (`proj/`), a depot (`depot/`) and a log of
/// command runs (`runs.log`, appended to by the fixture commands).
pub struct Project {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub depot: PathBuf,
}

/// The result of one relocache run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    /// The kind of each problem `verify --json` reported, in its order.
    pub fn problem_kinds(&self) -> Vec<String> {
        self.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_owned())
            .collect()
    }
    /// target name → outcome, from `build --json`.
    pub fn outcomes(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.json()["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }
    pub fn outcome(&self, name: &str) -> String {
        self.outcomes()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no target {name} in {}", self.stdout))
            .1
    }
    /// Asserts that stderr contains every one of `needles`; on failure it
    /// prints which one is missing and the whole run.
    #[track_caller]
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        self.assert_text("stderr", &self.stderr, needles, true)
    }

    /// Asserts that stdout contains every one of `needles`.
    #[track_caller]
    pub fn assert_stdout_has(&self, needles: &[&str]) -> &Self {
        self.assert_text("stdout", &self.stdout, needles, true)
    }

    /// Asserts that stderr contains none of `needles`.
    #[track_caller]
    pub fn assert_stderr_lacks(&self, needles: &[&str]) -> &Self {
        self.assert_text("stderr", &self.stderr, needles, false)
    }

    /// Asserts that stdout contains none of `needles`.
    #[track_caller]
    pub fn assert_stdout_lacks(&self, needles: &[&str]) -> &Self {
        self.assert_text("stdout", &self.stdout, needles, false)
    }

    #[track_caller]
    fn assert_text(&self, stream: &str, text: &str, needles: &[&str], present: bool) -> &Self {
        for needle in needles {
            if text.contains(needle) != present {
                let want = if present {
                    "missing from"
                } else {
                    "unexpected in"
                };
                panic!("`{needle}` {want} {stream}\n{}", self.render());
            }
        }
        self
    }

    /// The run as a user sees it: exit code, stdout and stderr, unfiltered
    /// (what a failed assertion prints; [`assert_cli_snapshot!`] filters it).
    pub fn render(&self) -> String {
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Deterministic pseudo-random bytes (xorshift), different for each seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Tests that compile C need a compiler: fail loudly when there is none.
pub fn require_cc() {
    let ok = Command::new("cc")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs a C compiler: install gcc (`cc` on PATH; .ci/deps does)"
    );
}

pub fn bin() -> Command {
    without_relocache_env(Command::new(env!("CARGO_BIN_EXE_relocache")))
}

pub fn without_relocache_env(mut c: Command) -> Command {
    for v in [
        "RELOCACHE_DEPOT",
        "RELOCACHE_DEPOT_PATH",
        "RELOCACHE_REMOTE",
        "RELOCACHE_REMOTE_MODE",
        "RELOCACHE_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

/// Whether the tests run as root, who can read and write anything.
pub fn is_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0"
}

/// The binary run as `nobody` (setpriv), with HOME at `home`: how a test
/// running as root takes permissions away from relocache.
pub fn bin_as_nobody(home: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_relocache"))
        .env("HOME", home);
    without_relocache_env(c)
}

pub fn output(mut c: Command) -> Run {
    run_of(c.output().expect("relocache runs"))
}

/// `c`'s result, failing the test if it runs longer than `limit` (it is
/// killed then): for what must never hang.
pub fn output_within(mut c: Command, limit: std::time::Duration) -> Run {
    use std::process::Stdio;
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("relocache runs");
    let pid = child.id().to_string();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let hung = finished.recv_timeout(limit).is_err();
        if hung {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        hung
    });
    let out = child.wait_with_output().expect("relocache runs");
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "it hangs: killed after {limit:?}"
    );
    run_of(out)
}

fn run_of(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Project {
    /// A project with `manifest` and `files` (path, content).
    pub fn new(manifest: &str, files: &[(&str, &str)]) -> Project {
        Project::new_in(&std::env::temp_dir(), manifest, files)
    }

    /// [`Project::new`] in a fresh directory below `dir` (another filesystem, say).
    pub fn new_in(dir: &Path, manifest: &str, files: &[(&str, &str)]) -> Project {
        let tmp = tempfile::tempdir_in(dir).unwrap();
        let root = tmp.path().join("proj");
        std::fs::create_dir_all(&root).unwrap();
        let p = Project {
            depot: tmp.path().join("depot"),
            root,
            tmp,
        };
        p.write("relocache.toml", manifest);
        for (path, content) in files {
            p.write(path, content);
        }
        p
    }

    /// Copies the c-demo fixture (without build outputs).
    pub fn c_demo() -> Project {
        let p = Project::new("", &[]);
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/c-demo"),
            &p.root,
        );
        let _ = std::fs::remove_dir_all(p.root.join("build"));
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// `relocache -C <root> --depot <depot> ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("-C")
            .arg(&self.root)
            .arg("--depot")
            .arg(&self.depot)
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.cmd(args))
    }

    /// `build --json ARGS`. With `RELOCACHE_TEST_PACKED=1` (`.ci/run` runs
    /// the build, key and restore tests so a second time) every build is
    /// followed by `gc --repack`, so that the next build reads every blob
    /// from a pack instead of a loose file.
    pub fn build(&self, args: &[&str]) -> Run {
        let mut a = vec!["build", "--json"];
        a.extend_from_slice(args);
        let r = self.run(&a);
        if std::env::var_os("RELOCACHE_TEST_PACKED").is_some()
            && self.depot.join("DEPOT.toml").is_file()
        {
            let g = self.run(&["gc", "--repack"]);
            assert_eq!(
                g.code,
                0,
                "gc --repack after a build failed:\n{}",
                g.render()
            );
        }
        r
    }

    /// How many times each command ran (lines `name` in runs.log).
    pub fn runs(&self, name: &str) -> usize {
        std::fs::read_to_string(self.tmp.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == name)
            .count()
    }

    pub fn total_runs(&self) -> usize {
        std::fs::read_to_string(self.tmp.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Number of entries in the depot.
    pub fn entries(&self) -> usize {
        walkdir::WalkDir::new(self.depot.join("entries-v2"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count()
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).unwrap();
            std::os::unix::fs::symlink(t, &dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A two-step chain `a -> b` plus an independent `c`; each command logs its
/// run to ../runs.log (outside the project, so it is never an input).
pub const CHAIN: &str = r#"
[target.a]
run = "echo a >> ../runs.log && mkdir -p out && tr -d ' ' < a.txt > out/a.txt"
inputs = ["a.txt"]
outputs = ["out/a.txt"]

[target.b]
run = "echo b >> ../runs.log && cat out/a.txt b.txt > out/b.txt"
inputs = ["b.txt", "out/a.txt"]
deps = ["a"]
outputs = ["out/b.txt"]

[target.c]
run = "echo c >> ../runs.log && cp c.txt out-c.txt"
inputs = ["c.txt"]
outputs = ["out-c.txt"]
"#;

pub fn chain() -> Project {
    Project::new(
        CHAIN,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    )
}

/// DESIGN.md's depot invariants, checked from the outside: every entry parses
/// and names its key, every blob it references exists and hashes to its name,
/// every blob file is named by its content, nothing but staging files in tmp/.
pub fn check_depot_invariants(depot: &Path) {
    use relocache::depot::Depot;
    let d = Depot::open_existing(depot).expect("depot opens");
    for key in d.list_entries().unwrap() {
        let entry = d
            .read_entry(&key)
            .unwrap_or_else(|e| panic!("entry {key} unreadable: {e}"))
            .unwrap();
        for b in entry.blobs() {
            assert!(d.has_blob(&b), "entry {key} names missing blob {b}");
        }
    }
    for b in d.list_blobs().unwrap() {
        let mut sink = std::io::sink();
        d.copy_blob(&b, &mut sink)
            .unwrap_or_else(|e| panic!("blob {b} is not its content: {e}"));
    }
    // Every packed blob is its content too.
    let packs = relocache::depot::packs::PackSet::load(&d, true).unwrap();
    assert!(packs.faults.is_empty(), "damaged packs: {:?}", packs.faults);
    for b in packs.digests() {
        d.copy_blob(&b, &mut std::io::sink())
            .unwrap_or_else(|e| panic!("packed blob {b} is not its content: {e}"));
    }
    // No partial file under a final name: every file in objects-v1 is a
    // blob, and packs/ holds only packs and their indexes.
    let objects = depot.join("objects-v1");
    for e in walkdir::WalkDir::new(&objects).min_depth(2) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().parent() == Some(&objects.join("packs")) {
            let id = name
                .strip_prefix("pack-")
                .and_then(|n| n.strip_suffix(".pack").or_else(|| n.strip_suffix(".idx")));
            assert!(
                id.is_some_and(|id| id.len() == 64),
                "stray file in objects-v1/packs: {name}"
            );
            continue;
        }
        assert!(
            name.len() == 64 && !name.starts_with('.'),
            "stray file in objects-v1: {name}"
        );
    }
}

/// insta settings that make CLI text the same on every machine and run:
/// the temp dir becomes `[TMP]` (as written and as the kernel reports it),
/// blake3 hex becomes `[HASH]` (abbreviated: `[HEX]`), durations `[TIME]` and process ids `[PID]`.
/// Only what varies between runs is filtered: outcomes, names, counts, exit
/// codes and wording stay in the snapshot.
pub fn snapshot_settings(tmp: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    let mut roots = vec![tmp.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(tmp) {
        if real != tmp {
            roots.insert(0, real);
        }
    }
    for root in roots {
        let text = root.display().to_string();
        s.add_filter(&regex_escape(&text), "[TMP]");
    }
    s.add_filter(r"\b[0-9a-f]{64}\b", "[HASH]");
    s.add_filter(r"\b[0-9a-f]{12}\b", "[HEX]");
    s.add_filter(r"\b\d+(\.\d+)?\s?(ns|µs|us|ms|s)\b", "[TIME]");
    s.add_filter(r"\bpid \d+\b", "pid [PID]");
    s
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Pins a [`Run`] (exit code, stdout, stderr) as an insta snapshot in
/// `tests/snapshots/`, filtered by [`snapshot_settings`] for the temp dir
/// holding `$tmp` (a `&Path`). Review a new snapshot by eye before accepting it.
/// Named by [`snapshot_name`], so a helper that snapshots (`rejects`,
/// `assert_refused`) names each file after the test calling it.
macro_rules! assert_cli_snapshot {
    ($tmp:expr, $run:expr) => {{
        let settings = $crate::common::snapshot_settings($tmp);
        let name = $crate::common::snapshot_name();
        settings.bind(|| ::insta::assert_snapshot!(name, $run.render()));
    }};
}
pub(crate) use assert_cli_snapshot;

/// The running test's name (libtest names each test's thread after it),
/// then `-2`, `-3`, … for its later snapshots: insta's own naming would use
/// the helper's name and number the snapshots of parallel tests by chance.
pub fn snapshot_name() -> String {
    static COUNTS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let test = std::thread::current()
        .name()
        .expect("snapshots are taken on a test's own thread")
        .replace("::", "__");
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let n = counts.entry(test.clone()).or_default();
    *n += 1;
    match *n {
        1 => test,
        n => format!("{test}-{n}"),
    }
}

/// One node of a [`tree`]: what a command could have changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every directory, file (with its bytes) and symlink (with its text) below
/// `dir`, to prove a command wrote nothing there.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Node> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let ft = e.file_type();
            let node = if ft.is_symlink() {
                Node::Link(std::fs::read_link(e.path()).unwrap())
            } else if ft.is_dir() {
                Node::Dir
            } else {
                Node::File(std::fs::read(e.path()).unwrap())
            };
            (e.path().to_path_buf(), node)
        })
        .collect()
}

/// Where a blob's stored bytes are: its loose file, else the pack holding
/// it, and their range in that file.
pub struct Stored {
    /// The loose file or the pack.
    pub file: PathBuf,
    /// Where the stored bytes start in it.
    pub offset: u64,
    /// How many stored bytes.
    pub len: u64,
    /// Whether `file` is a pack.
    pub packed: bool,
}

/// Where blob `d` of `depot` is stored. Tests that damage a stored blob on
/// purpose go through it, so under `RELOCACHE_TEST_PACKED=1` (every blob in
/// a pack) the same test damages the pack: its packed twin.
pub fn stored(depot: &Path, d: &relocache::digest::Digest) -> Stored {
    use relocache::depot::packs::BlobLocation;
    let depot = relocache::depot::Depot::open_existing(depot).expect("depot opens");
    let blob = depot
        .open_blob(d)
        .expect("blob readable")
        .unwrap_or_else(|| panic!("blob {d} is stored nowhere"));
    match blob.location().clone() {
        BlobLocation::Loose(file) => Stored {
            len: std::fs::metadata(&file).unwrap().len(),
            file,
            offset: 0,
            packed: false,
        },
        BlobLocation::Packed {
            pack,
            offset,
            length,
        } => Stored {
            file: pack,
            offset,
            len: length,
            packed: true,
        },
    }
}

impl Stored {
    /// The stored bytes.
    pub fn read(&self) -> Vec<u8> {
        let all = std::fs::read(&self.file).unwrap();
        all[self.offset as usize..(self.offset + self.len) as usize].to_vec()
    }

    /// XORs byte `at` of the stored bytes with `mask`, in place.
    pub fn flip(&self, at: u64, mask: u8) {
        assert!(
            at < self.len,
            "byte {at} is past the blob's {} bytes",
            self.len
        );
        let mut all = std::fs::read(&self.file).unwrap();
        all[(self.offset + at) as usize] ^= mask;
        std::fs::write(&self.file, all).unwrap();
    }

    /// The problem kind `verify --integrity` reports for a damaged blob
    /// stored here.
    pub fn corrupt_kind(&self) -> &'static str {
        if self.packed {
            "corrupt-packed-blob"
        } else {
            "corrupt-blob"
        }
    }
}

/// The files below `dir`, relative to it.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
        .collect();
    all.sort();
    all
}

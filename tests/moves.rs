//! A moved project never silently restores a non-relocatable entry: built
//! with real gcc without a prefix map (`-g` embeds the build directory), a
//! project moved with `mv` still hits, and the build says once how many
//! targets came from entries that embed the old location, which, and the
//! fix; `status` and `explain` say it too. At the original place, or with
//! relocatable entries, nothing is said.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `relocache -C ROOT --depot DEPOT ARGS` with `CFLAGS`.
fn at(root: &Path, depot: &Path, cflags: &str, args: &[&str]) -> Run {
    let mut c = bin();
    c.arg("-C")
        .arg(root)
        .arg("--depot")
        .arg(depot)
        .args(args)
        .env("CFLAGS", cflags);
    output(c)
}

fn mv(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let s = Command::new("mv").arg(from).arg(to).status().unwrap();
    assert!(s.success(), "mv {} {}", from.display(), to.display());
}

/// The c-demo fixture, and where it is moved to (same directory name, so
/// the project and its records keep their name).
fn c_demo_and_elsewhere() -> (Project, PathBuf) {
    require_cc();
    let p = Project::c_demo();
    let moved = p.tmp.path().join("elsewhere").join("proj");
    (p, moved)
}

/// The targets the build said were restored from entries built elsewhere.
fn warned(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["warnings"]
                .to_string()
                .contains("restored from an entry built at another location")
        })
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

const OBJECTS: [&str; 3] = ["obj:src/greet.c", "obj:src/main.c", "obj:src/squares.c"];

#[test]
fn a_moved_project_warns_once_about_entries_that_embed_the_old_place() {
    let (p, moved) = c_demo_and_elsewhere();
    let b = at(&p.root, &p.depot, "-g", &["build", "--json"]);
    b.ok();
    assert_eq!(b.json()["built"], 5, "{}", b.stderr);
    assert_eq!(b.json()["not_relocatable_elsewhere"], 0);

    mv(&p.root, &moved);
    // Before building: the objects (and the linked program, which carries
    // their debug info) are ready, but not relocatable; gen is.
    let st = at(&moved, &p.depot, "-g", &["status"]);
    st.ok();
    for t in OBJECTS {
        st.assert_stdout_has(&[&format!("ready (not relocatable) {t}")]);
    }
    let js = at(&moved, &p.depot, "-g", &["status", "--json"]).json();
    let flagged: Vec<&str> = js["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["not_relocatable_elsewhere"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!flagged.contains(&"gen"), "{js}");
    assert!(OBJECTS.iter().all(|o| flagged.contains(o)), "{js}");

    // The build restores as before, and says so once, with the count.
    let b = at(&moved, &p.depot, "-g", &["build", "--json"]);
    b.ok();
    assert_eq!(b.json()["hits"], 5, "{}", b.stderr);
    let names = warned(&b);
    assert_eq!(b.json()["not_relocatable_elsewhere"], names.len());
    assert!(!names.contains(&"gen".to_owned()), "{names:?}");
    assert!(OBJECTS.iter().all(|o| names.contains(&o.to_string())));
    let text = at(&moved, &p.depot, "-g", &["build"]);
    text.ok();
    let n = names.len();
    text.assert_stderr_has(&[
        &format!(
            "{n} targets restored from entries built at another location embed that location: `"
        ),
        "-ffile-prefix-map=",
        "--remap-path-prefix=",
        "relocache build --force",
    ]);
    assert_eq!(
        text.stderr.matches("built at another location").count(),
        1,
        "said once per build:\n{}",
        text.stderr
    );
    assert!(text.stderr.contains(&format!("and {} more", n - 3)) || n <= 3);

    // explain says why.
    let ex = at(&moved, &p.depot, "-g", &["explain", "obj:src/greet.c"]);
    ex.ok().assert_stdout_has(&[
        "is ready from an entry built at another location",
        "embedded-path `build/greet.o`",
    ]);

    // The gate keeps its behaviour: a non-relocatable hit fails.
    let gate = at(&moved, &p.depot, "-g", &["build", "--require-relocatable"]);
    assert_eq!(gate.code, 1, "{}", gate.render());
    gate.assert_stderr_has(&["--require-relocatable is set"]);

    // Back at the original place, the same entries name the right place.
    mv(&moved, &p.root);
    let back = at(&p.root, &p.depot, "-g", &["build", "--json"]);
    back.ok();
    assert_eq!(back.json()["hits"], 5);
    assert_eq!(back.json()["not_relocatable_elsewhere"], 0);
    assert_eq!(warned(&back), Vec::<String>::new());
    let st = at(&p.root, &p.depot, "-g", &["status"]);
    st.ok().assert_stdout_lacks(&["not relocatable"]);
}

#[test]
fn relocatable_entries_move_without_a_word() {
    let (p, moved) = c_demo_and_elsewhere();
    let flags = |root: &Path| format!("-g -ffile-prefix-map={}=.", root.display());
    at(&p.root, &p.depot, &flags(&p.root), &["build", "--json"]).ok();
    mv(&p.root, &moved);
    let b = at(&moved, &p.depot, &flags(&moved), &["build", "--json"]);
    b.ok();
    assert_eq!(b.json()["hits"], 5, "{}", b.stderr);
    assert_eq!(b.json()["not_relocatable_elsewhere"], 0);
    assert_eq!(warned(&b), Vec::<String>::new());
    let text = at(&moved, &p.depot, &flags(&moved), &["build"]);
    text.ok()
        .assert_stderr_lacks(&["another location", "not relocatable"]);
    at(&moved, &p.depot, &flags(&moved), &["status"])
        .ok()
        .assert_stdout_lacks(&["not relocatable"]);
}

/// Entries written before the root digest existed: where they were built
/// is unknown, so a move says nothing new (as before).
#[test]
fn an_entry_without_a_root_digest_is_not_warned_about() {
    let (p, moved) = c_demo_and_elsewhere();
    at(&p.root, &p.depot, "-g", &["build", "--json"]).ok();
    // Strip the field and reseal, as an older relocache wrote them.
    for e in walkdir::WalkDir::new(p.depot.join("entries-v2")) {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("root_digest = ") && !l.starts_with("checksum = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(body.len() + 76, text.len(), "{text}");
        let sum = relocache::digest::Digest::of(body.as_bytes()).to_hex();
        std::fs::write(e.path(), format!("{body}checksum = \"{sum}\"\n")).unwrap();
    }
    mv(&p.root, &moved);
    let b = at(&moved, &p.depot, "-g", &["build", "--json"]);
    b.ok();
    assert_eq!(b.json()["hits"], 5, "{}", b.stderr);
    assert_eq!(b.json()["not_relocatable_elsewhere"], 0);
}

//! A real C library (zstd's `lib/`, from the `zstd-sys` crate this
//! repository already builds) through one template with gcc depfiles, as a
//! new user would write it: everything builds, warm builds hit, a new file
//! is one new instance, a header edit rebuilds exactly the objects that
//! include it, and a relocated copy with a copied depot hits everything with
//! identical bytes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

/// 11 lines: the whole manifest for a library of 30-odd files.
const MANIFEST: &str = r#"[defaults]
tools = ["cc"]

[target.obj]
foreach = ["lib/**/*.c", "lib/**/*.S"]
run = "mkdir -p build/{dir} && cc -O0 -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d"
depfile = "build/{dir}/{stem}.d"
outputs = ["build/{dir}/{stem}.o"]

[target.lib]
run = "ar rcsD build/libzstd.a {outputs:obj}"
deps = ["obj"]
outputs = ["build/libzstd.a"]
"#;

/// zstd's `lib/` as the `zstd-sys` crate in Cargo.lock ships it, from the
/// cargo registry (the build of this repository downloads it).
fn zstd_lib() -> PathBuf {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"zstd-sys\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("zstd-sys in Cargo.lock");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registry = home.join("registry/src");
    for index in
        std::fs::read_dir(&registry).unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
    {
        let lib = index
            .unwrap()
            .path()
            .join(format!("zstd-sys-{version}/zstd/lib"));
        if lib.join("zstd.h").is_file() {
            return lib;
        }
    }
    panic!(
        "zstd-sys-{version} is not in {} (run `cargo fetch`)",
        registry.display()
    );
}

fn zstd_project() -> Project {
    let p = Project::new(MANIFEST, &[]);
    let src = zstd_lib();
    for dir in ["common", "compress", "decompress"] {
        copy_tree(&src.join(dir), &p.path(&format!("lib/{dir}")));
    }
    for f in ["zstd.h", "zstd_errors.h"] {
        std::fs::copy(src.join(f), p.path(&format!("lib/{f}"))).unwrap();
    }
    p
}

fn outcomes_by(r: &Run, outcome: &str) -> BTreeSet<String> {
    r.outcomes()
        .into_iter()
        .filter(|(_, o)| o == outcome)
        .map(|(n, _)| n)
        .collect()
}

/// The instances whose depfile names `header`, read from the depfiles gcc wrote.
fn including(p: &Project, header: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for e in walkdir::WalkDir::new(p.path("build")) {
        let e = e.unwrap();
        if e.path().extension().is_some_and(|x| x == "d") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            if text.contains(header) {
                let rel = e.path().strip_prefix(p.path("build")).unwrap();
                let stem = rel.with_extension("");
                let ext = if p.path(&format!("{}.S", stem.display())).exists() {
                    "S"
                } else {
                    "c"
                };
                found.insert(format!("obj:{}.{ext}", stem.display()));
            }
        }
    }
    found
}

#[test]
fn a_template_with_depfiles_builds_a_real_c_library_precisely() {
    assert!(MANIFEST.lines().count() <= 15);
    let p = zstd_project();
    let r = p.build(&[]);
    r.ok();
    let built = outcomes_by(&r, "built");
    let objects = built.iter().filter(|n| n.starts_with("obj:")).count();
    assert!(objects >= 20, "{objects} objects: {built:?}");
    assert!(built.contains("lib") && p.path("build/libzstd.a").is_file());
    assert!(
        built.iter().any(|n| n.ends_with(".S")),
        "the assembly file is an instance: {built:?}"
    );

    // Warm: every instance hits.
    let r = p.build(&[]);
    assert_eq!(outcomes_by(&r, "built"), BTreeSet::new(), "{}", r.stdout);

    // A header included by some objects only: exactly those rebuild.
    let header = "lib/compress/zstd_ldm.h";
    let k = including(&p, header);
    assert!(
        !k.is_empty() && k.len() < objects,
        "{header} is included by {k:?}"
    );
    let original = p.read(header);
    p.write(
        header,
        &format!("{original}\nstatic const int relocache_test_edit = 1;\n"),
    );
    let r = p.build(&[]);
    r.ok();
    let rebuilt: BTreeSet<String> = outcomes_by(&r, "built")
        .into_iter()
        .filter(|n| n.starts_with("obj:"))
        .collect();
    assert_eq!(rebuilt, k, "{}", r.stdout);
    let explain = p.run(&["explain", k.iter().next().unwrap()]);
    explain.ok();
    // Reverting: all hits again, the library byte for byte the first one.
    p.write(header, &original);
    let r = p.build(&[]);
    assert_eq!(outcomes_by(&r, "built"), BTreeSet::new(), "{}", r.stdout);
    let lib = std::fs::read(p.path("build/libzstd.a")).unwrap();

    // A new file: one new instance (and the link step).
    p.write(
        "lib/common/extra.c",
        "#include \"zstd_internal.h\"\nint relocache_extra(void) { return 1; }\n",
    );
    let r = p.build(&[]);
    assert_eq!(
        outcomes_by(&r, "built"),
        BTreeSet::from(["obj:lib/common/extra.c".to_owned(), "lib".to_owned()]),
        "{}",
        r.stdout
    );
    std::fs::remove_file(p.path("lib/common/extra.c")).unwrap();
    let r = p.build(&[]);
    assert_eq!(outcomes_by(&r, "built"), BTreeSet::new(), "{}", r.stdout);

    // A relocated copy with a copied depot: all hits, identical bytes.
    let moved = tempfile::tempdir().unwrap();
    let root = moved.path().join("somewhere/else/zstd");
    copy_tree(&p.root, &root);
    std::fs::remove_dir_all(root.join("build")).unwrap();
    let depot = moved.path().join("depot");
    copy_tree(&p.depot, &depot);
    let at = |args: &[&str]| {
        let mut c = bin();
        c.arg("-C").arg(&root).arg("--depot").arg(&depot).args(args);
        output(c)
    };
    let r = at(&["build", "--json"]);
    r.ok();
    assert_eq!(outcomes_by(&r, "built"), BTreeSet::new(), "{}", r.stdout);
    assert_eq!(std::fs::read(root.join("build/libzstd.a")).unwrap(), lib);
    at(&["verify", "--relocatable"]).ok();
}

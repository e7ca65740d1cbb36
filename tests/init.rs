//! `relocache init`: the starter manifest, and one generated from the
//! compile_commands.json of a real third-party CMake project (BLAKE3's C
//! implementation, shipped inside the `blake3` crate relocache depends on)
//! configured with the system's cmake.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `relocache ARGS` run inside the project (no `-C`): a relative database
/// path is relative to the directory relocache starts in.
fn run_inside(p: &Project, args: &[&str]) -> Run {
    let mut c = bin();
    c.current_dir(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .args(args);
    output(c)
}

/// An empty project directory (no relocache.toml) in a temp dir.
fn empty_project() -> Project {
    let p = Project::new("", &[]);
    std::fs::remove_file(p.path("relocache.toml")).unwrap();
    p
}

#[test]
fn init_writes_the_starter_in_the_c_directory_and_never_replaces_a_manifest() {
    let p = empty_project();
    let r = p.run(&["init"]);
    r.ok()
        .assert_stderr_has(&["wrote", "relocache.toml", "starter"]);
    let starter = p.read("relocache.toml");
    for needle in ["[target.obj]", "foreach", "depfile", "{outputs:obj}"] {
        assert!(starter.contains(needle), "`{needle}` missing:\n{starter}");
    }

    p.write("relocache.toml", "# mine\n");
    let r = p.run(&["init"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["already exists", "help:"]);
    assert_eq!(
        p.read("relocache.toml"),
        "# mine\n",
        "the manifest was replaced"
    );
    let r = p.run(&["init", "--from-compile-commands", "/nonexistent.json"]);
    assert_eq!(r.code, 2, "{}", r.render());
    assert_eq!(p.read("relocache.toml"), "# mine\n");
}

/// The starter is a working manifest for a C project under `src/`: it
/// parses, builds, and a second build is all hits.
#[test]
fn the_starter_parses_and_builds_a_c_project() {
    let p = empty_project();
    p.run(&["init"]).ok();
    p.write("include/util.h", "int util(void);\n");
    p.write(
        "src/main.c",
        "#include \"util.h\"\nint main(void) { return util(); }\n",
    );
    p.write(
        "src/lib/util.c",
        "#include \"util.h\"\nint util(void) { return 0; }\n",
    );
    p.run(&["status"]).ok();
    let first = p.build(&[]);
    first.ok();
    let second = p.build(&[]);
    second.ok();
    for (name, outcome) in second.outcomes() {
        assert_eq!(outcome, "hit", "{name} in\n{}", second.render());
    }
    let app = Command::new(p.path("build/app")).status().unwrap();
    assert!(app.success());
}

#[test]
fn a_malformed_database_is_refused_with_its_line_and_nothing_is_written() {
    let p = empty_project();
    p.write(
        "build/compile_commands.json",
        "[\n  {\"directory\": \"/x\",\n",
    );
    let r = run_inside(
        &p,
        &[
            "init",
            "--from-compile-commands",
            "build/compile_commands.json",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&[
        "build/compile_commands.json:3:",
        "not a compilation database",
        "help:",
    ]);
    assert!(!p.path("relocache.toml").exists());

    p.write("cc.json", r#"[{"directory": "/x", "file": "a.c"}]"#);
    let r = run_inside(&p, &["init", "--from-compile-commands", "cc.json"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["entry 0", "neither `command` nor `arguments`", "help:"]);
    assert!(!p.path("relocache.toml").exists());
}

/// BLAKE3's C sources (with their CMakeLists.txt), from the `blake3` crate
/// in cargo's registry: relocache itself depends on it, so it is there
/// whenever relocache was built, at the version Cargo.lock pins.
fn blake3_c_sources() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.lock")).unwrap()).unwrap();
    let version = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("blake3"))
        .expect("blake3 is in Cargo.lock")["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registries = cargo_home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("no cargo registry at {}: {e}", registries.display()))
        .map(|d| d.unwrap().path().join(format!("blake3-{version}/c")))
        .find(|c| c.join("CMakeLists.txt").is_file())
        .unwrap_or_else(|| {
            panic!(
                "blake3-{version}/c/CMakeLists.txt is in no registry below {}",
                registries.display()
            )
        })
}

/// A copy of BLAKE3's C project, configured by cmake into `build/` with
/// compile commands exported. cmake is a test dependency (`.ci/deps`).
fn configured_blake3() -> Project {
    let p = empty_project();
    copy_tree(&blake3_c_sources(), &p.root);
    let cmake = Command::new("cmake")
        .args([
            "-S",
            ".",
            "-B",
            "build",
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
        ])
        .current_dir(&p.root)
        .output()
        .unwrap_or_else(|e| panic!("cmake is missing ({e}): run .ci/deps, which installs it"));
    assert!(
        cmake.status.success(),
        "cmake failed:\n{}",
        String::from_utf8_lossy(&cmake.stderr)
    );
    p
}

#[test]
fn init_from_the_compile_commands_of_a_real_cmake_project() {
    let p = configured_blake3();
    let r = run_inside(
        &p,
        &[
            "init",
            "--from-compile-commands",
            "build/compile_commands.json",
            "--json",
        ],
    );
    r.ok();
    let summary = r.json();
    // BLAKE3's C files and its x86-64 assembly files are compiled with
    // different flags: two templates, every command covered, none left out.
    let templates = summary["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "{}", r.stdout);
    assert_eq!(
        summary["targets"].as_array().unwrap().len(),
        0,
        "{}",
        r.stdout
    );
    assert!(summary["skipped"].as_array().unwrap().is_empty());

    let text = p.read("relocache.toml");
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let c = &manifest["target"]["blake3-c"];
    assert_eq!(
        c["foreach"].as_array().unwrap().len(),
        3,
        "blake3.c, blake3_dispatch.c, blake3_portable.c:\n{text}"
    );
    let run = c["run"].as_str().unwrap();
    for needle in [
        "-I. ",
        "-c {path}",
        "-MD -MF build/CMakeFiles/blake3.dir/{path}.o.d",
    ] {
        assert!(run.contains(needle), "`{needle}` missing from {run}");
    }
    let root = p.root.display().to_string();
    assert!(
        !text.contains(&root),
        "an absolute project path in:\n{text}"
    );

    let mut settings = snapshot_settings(p.tmp.path());
    // The compiler cmake found (`/usr/bin/cc` on Debian).
    settings.add_filter(r#"run = "\S*cc "#, "run = \"[CC] ");
    settings.bind(|| insta::assert_snapshot!(snapshot_name(), text));
}

/// The generated manifest builds BLAKE3's objects, and a second build is
/// all hits.
#[test]
fn the_manifest_generated_from_cmake_builds_and_rebuilds_as_hits() {
    let p = configured_blake3();
    run_inside(
        &p,
        &[
            "init",
            "--from-compile-commands",
            "build/compile_commands.json",
        ],
    )
    .ok();
    let first = p.build(&[]);
    first.ok();
    assert!(p.path("build/CMakeFiles/blake3.dir/blake3.c.o").is_file());
    let second = p.build(&[]);
    second.ok();
    let outcomes = second.outcomes();
    assert_eq!(outcomes.len(), 7, "{}", second.render());
    for (name, outcome) in outcomes {
        assert_eq!(outcome, "hit", "{name} in\n{}", second.render());
    }
}

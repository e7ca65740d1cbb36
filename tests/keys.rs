//! What enters a key, driven through the real binary: text that spells a
//! root marker literally, and tools behind launchers and shims.

mod common;

use common::*;

const ECHO_V: &str =
    "[target.t]\nrun = \"echo \\\"$V\\\" > out\"\nenv = [\"V\"]\noutputs = [\"out\"]\n";

fn build_with_v(p: &Project, v: &str) -> Run {
    let mut c = p.cmd(&["build", "--json"]);
    c.env("V", v);
    let r = output(c);
    r.ok();
    r
}

#[test]
fn a_literal_project_marker_in_env_does_not_hit_the_real_root() {
    let p = Project::new(ECHO_V, &[]);
    assert_eq!(build_with_v(&p, "@project/x").outcome("t"), "built");
    assert_eq!(p.read("out"), "@project/x\n");
    let real = format!("{}/x", p.root.display());
    let r = build_with_v(&p, &real);
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
    // And back: the literal value hits its own entry, not the root's.
    assert_eq!(build_with_v(&p, "@project/x").outcome("t"), "hit");
    assert_eq!(p.read("out"), "@project/x\n");
}

#[test]
fn a_literal_depot_marker_in_env_does_not_hit_the_real_depot() {
    let p = Project::new(ECHO_V, &[]);
    assert_eq!(build_with_v(&p, "@depot/x").outcome("t"), "built");
    let real = format!("{}/x", p.depot.display());
    let r = build_with_v(&p, &real);
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
}

#[test]
fn a_command_spelling_out_the_root_does_not_hit_the_literal_marker() {
    let p = Project::new(
        "[target.t]\nrun = \"echo @project/y > out\"\noutputs = [\"out\"]\n",
        &[],
    );
    assert_eq!(p.build(&[]).ok().outcome("t"), "built");
    assert_eq!(p.read("out"), "@project/y\n");
    let real = format!("{}/y", p.root.display());
    p.write(
        "relocache.toml",
        &format!("[target.t]\nrun = \"echo {real} > out\"\noutputs = [\"out\"]\n"),
    );
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
}

#[test]
fn an_env_value_that_is_not_utf8_does_not_hit_its_lossy_spelling() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new(ECHO_V, &[]);
    let mut c = p.cmd(&["build", "--json"]);
    c.env("V", std::ffi::OsStr::from_bytes(b"x\xff"));
    assert_eq!(output(c).ok().outcome("t"), "built");
    assert_eq!(std::fs::read(p.path("out")).unwrap(), b"x\xff\n");
    let r = build_with_v(&p, "x\u{fffd}");
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), "x\u{fffd}\n");
}

#[test]
fn explain_shows_a_literal_marker_escaped_and_the_root_as_a_marker() {
    let p = Project::new(ECHO_V, &[]);
    build_with_v(&p, "@project/x");
    let mut c = p.cmd(&["explain", "t", "--show-values"]);
    c.env("V", format!("{}/x", p.root.display()));
    let r = output(c);
    assert!(
        r.stdout
            .contains("env changed: V (@@project/x -> @project/x)"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// `$PATH` with `dir` first.
fn path_with(dir: &std::path::Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// The directory of the `rustup` on PATH, which must have a stable and a
/// nightly toolchain: this test is about rustup's proxies.
fn rustup_dir() -> std::path::PathBuf {
    let dir = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("rustup").is_file() && d.join("rustc").exists())
        .unwrap_or_else(|| {
            panic!(
                "\n\n*** THIS TEST NEEDS RUSTUP ***\nno `rustup` with a `rustc` proxy beside it on PATH; install rustup (https://rustup.rs) with the stable and nightly toolchains\n\n"
            )
        });
    let list = std::process::Command::new(dir.join("rustup"))
        .args(["toolchain", "list"])
        .output()
        .expect("rustup runs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("stable") && list.contains("nightly"),
        "\n\n*** THIS TEST NEEDS RUSTUP'S STABLE AND NIGHTLY TOOLCHAINS ***\nrun `rustup toolchain install stable nightly`; `rustup toolchain list` says:\n{list}\n"
    );
    dir
}

#[test]
fn a_rustup_proxy_is_keyed_by_the_toolchain_it_runs() {
    let dir = rustup_dir();
    let p = Project::new(
        "[target.v]\nrun = \"rustc --version > v.txt\"\ntools = [\"rustc\"]\noutputs = [\"v.txt\"]\n",
        &[],
    );
    let build = |toolchain: &str| {
        let mut c = p.cmd(&["build", "--json"]);
        c.env("PATH", path_with(&dir))
            .env("RUSTUP_TOOLCHAIN", toolchain);
        let r = output(c);
        r.ok();
        r
    };
    assert_eq!(build("stable").outcome("v"), "built");
    let stable = p.read("v.txt");
    std::fs::remove_file(p.path("v.txt")).unwrap();
    let r = build("nightly");
    assert_eq!(r.outcome("v"), "built", "{}", r.stderr);
    assert!(p.read("v.txt").contains("nightly"), "{}", p.read("v.txt"));
    assert!(r.json()["targets"][0]["warnings"].is_null(), "{}", r.stdout);
    // Back on stable: its own entry hits, with stable's version.
    assert_eq!(build("stable").outcome("v"), "hit");
    assert_eq!(p.read("v.txt"), stable);
}

const TOOL_SCRIPT: &str = "#!/bin/sh\necho \"mytool $TOOLVER\"\n";

fn project_with_tool(tools: &str) -> Project {
    let p = Project::new(
        &format!(
            "[target.t]\nrun = \"./bin/mytool > out\"\ntools = [{tools}]\noutputs = [\"out\"]\n"
        ),
        &[("bin/mytool", TOOL_SCRIPT)],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path("bin/mytool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn build_with(p: &Project, var: &str, value: &str) -> Run {
    let mut c = p.cmd(&["build", "--json"]);
    c.env(var, value);
    output(c)
}

#[test]
fn a_tool_with_a_check_misses_when_the_check_output_changes() {
    let p = project_with_tool("{ name = \"bin/mytool\", check = \"./bin/mytool --version\" }");
    let r = build_with(&p, "TOOLVER", "1");
    r.ok();
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("out"), "mytool 1\n");
    let r = build_with(&p, "TOOLVER", "2");
    r.ok();
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), "mytool 2\n");
    assert_eq!(build_with(&p, "TOOLVER", "1").ok().outcome("t"), "hit");
    assert_eq!(p.read("out"), "mytool 1\n");
    let mut c = p.cmd(&["explain", "t"]);
    c.env("TOOLVER", "2");
    let r = output(c);
    assert!(
        r.stdout.contains("tool changed: bin/mytool (")
            && r.stdout
                .contains("; keyed by its content and the output of `./bin/mytool --version`"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn a_failing_tool_check_fails_the_target_naming_tool_and_command() {
    let p = project_with_tool("{ name = \"bin/mytool\", check = \"echo broken >&2; exit 3\" }");
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&[
        "tool `bin/mytool`",
        "`echo broken >&2; exit 3`",
        "exit status: 3",
        "broken",
        "help:",
    ]);
    assert!(!p.path("out").exists());
}

const FAKE_SHIM: &str = "#!/usr/bin/env bash\nset -e\nprogram=\"${0##*/}\"\nexec \"/nonexistent/fakeenv/libexec/fakeenv\" exec \"$program\" \"$@\"\n";

#[test]
fn an_unresolvable_shim_tool_warns_with_the_fix() {
    let p = Project::new(
        "[target.t]\nrun = \"echo hi > out\"\ntools = [\"fakepy\"]\noutputs = [\"out\"]\n",
        &[],
    );
    let shims = p.tmp.path().join("fakeenv/shims");
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::write(shims.join("fakepy"), FAKE_SHIM).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shims.join("fakepy"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = p.cmd(&["build"]);
    c.env("PATH", path_with(&shims));
    let r = output(c);
    r.ok();
    r.assert_stderr_has(&[
        "warning: tool `fakepy` is the shim `",
        "fakeenv/shims/fakepy`",
        "check = \"fakepy --version\"",
    ]);
    // With a check, the shim is keyed by what it reports: no warning.
    p.write(
        "relocache.toml",
        "[target.t]\nrun = \"echo hi > out\"\ntools = [{ name = \"fakepy\", check = \"echo 1.0\" }]\noutputs = [\"out\"]\n",
    );
    let mut c = p.cmd(&["build"]);
    c.env("PATH", path_with(&shims));
    let r = output(c);
    r.ok();
    r.assert_stderr_lacks(&["warning"]);
}

#[test]
fn a_wrapper_script_tool_warns_with_the_fix() {
    let p = Project::new(
        "[target.t]\nrun = \"echo hi > out\"\ntools = [\"bin/cc\"]\noutputs = [\"out\"]\n",
        &[("bin/cc", "#!/bin/sh\nexec \"$REAL_CC\" \"$@\"\n")],
    );
    let r = p.run(&["build"]);
    r.ok();
    r.assert_stderr_has(&[
        "warning: tool `bin/cc` resolved to `",
        "looks like a shim or wrapper",
        "check = \"./bin/cc --version\"",
    ]);
}

#[test]
fn a_pyenv_shim_is_keyed_by_the_python_it_runs() {
    // A pyenv-like installation: a shim that asks `pyenv which`, and a
    // `pyenv` that answers by PYENV_VERSION, as the real one does. A
    // stand-in, so the test runs (and can fail) on any machine.
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new(
        "[target.v]\nrun = \"fakepy > v.txt\"\ntools = [\"fakepy\"]\noutputs = [\"v.txt\"]\n",
        &[],
    );
    let env = p.tmp.path().join("pyenv");
    let script = |rel: &str, text: String| {
        let f = env.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "shims/fakepy",
        "#!/bin/sh\nexec \"$(pyenv which fakepy)\" \"$@\"\n".into(),
    );
    script(
        "bin/pyenv",
        format!(
            "#!/bin/sh\n[ \"$1\" = which ] || exit 1\necho \"{}/versions/$PYENV_VERSION/bin/$2\"\n",
            env.display()
        ),
    );
    for v in ["3.11", "3.12"] {
        script(
            &format!("versions/{v}/bin/fakepy"),
            format!("#!/bin/sh\necho 'Python {v}'\n"),
        );
    }
    let path = std::env::join_paths(
        [env.join("bin"), env.join("shims")]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let build = |version: &str| {
        let mut c = p.cmd(&["build", "--json"]);
        c.env("PATH", &path).env("PYENV_VERSION", version);
        let r = output(c);
        r.ok();
        r.assert_stderr_lacks(&["warning"]);
        r
    };
    assert_eq!(build("3.11").outcome("v"), "built");
    assert_eq!(p.read("v.txt"), "Python 3.11\n");
    assert_eq!(build("3.12").outcome("v"), "built", "the shim is the same");
    assert_eq!(p.read("v.txt"), "Python 3.12\n");
    assert_eq!(build("3.11").outcome("v"), "hit");
    assert_eq!(p.read("v.txt"), "Python 3.11\n");
}

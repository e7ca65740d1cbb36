//! Every bad manifest exits 2 with `relocache.toml:LINE:COL`, the problem and a fix.

mod common;

use common::*;

/// `manifest` is refused with exit 2, the error pinned as a snapshot (which
/// shows `relocache.toml:LINE:COL`, the problem and a `help:` line); the
/// location and `words` are asserted too, so the test states its point.
#[track_caller]
fn rejects(manifest: &str, line_col: &str, words: &[&str]) {
    let p = Project::new(manifest, &[("a.c", "")]);
    let r = p.run(&["build"]);
    assert_eq!(r.code, 2, "exit code for:\n{manifest}\n{}", r.render());
    r.assert_stderr_has(&[&format!("relocache.toml:{line_col}"), "help:"])
        .assert_stderr_has(words)
        .assert_stderr_lacks(&["panicked"]);
    assert!(!p.depot.join("entries-v2").exists() || p.entries() == 0);
    assert_cli_snapshot!(p.tmp.path(), r);
}

#[test]
fn unknown_key() {
    rejects(
        "[target.a]\nrun = 'x'\noutput = ['o']\n",
        "3:1",
        &["unknown field `output`"],
    );
}

#[test]
fn unknown_top_level_table() {
    rejects(
        "[targets.a]\nrun = 'x'\n",
        "1:2",
        &["unknown field `targets`"],
    );
}

#[test]
fn absolute_path() {
    rejects(
        "[target.a]\nrun = 'x'\ninputs = ['/etc/passwd']\n",
        "3:11",
        &["absolute", "relative to the project root"],
    );
}

#[test]
fn escaping_path() {
    rejects(
        "[target.a]\nrun = 'x'\noutputs = ['build/../../out']\n",
        "3:12",
        &["escapes the project root"],
    );
    rejects(
        "[target.a]\nrun = 'x'\ninclude_dependency = ['../secret']\n",
        "3:23",
        &["escapes"],
    );
}

#[test]
fn missing_dep() {
    rejects(
        "[target.a]\nrun = 'x'\ndeps = ['gen']\n",
        "3:9",
        &["unknown target `gen`", "known targets: a"],
    );
}

#[test]
fn dependency_cycle() {
    rejects(
        "[target.a]\nrun = 'x'\ndeps = ['b']\n[target.b]\nrun = 'y'\ndeps = ['c']\n[target.c]\nrun = 'z'\ndeps = ['a']\n",
        "1:1",
        &["dependency cycle: a -> b -> c -> a"],
    );
}

#[test]
fn both_run_and_command() {
    rejects(
        "[target.a]\nrun = 'x'\ncommand = ['y']\n",
        "3:11",
        &["both `run` and `command`"],
    );
}

#[test]
fn neither_run_nor_command() {
    rejects(
        "[target.a]\noutputs = ['o']\n",
        "1:1",
        &["neither `run` nor `command`"],
    );
}

#[test]
fn overlapping_outputs() {
    rejects(
        "[target.a]\nrun = 'x'\noutputs = ['build']\n[target.b]\nrun = 'y'\noutputs = ['build/b.o']\n",
        "3:12",
        &["overlaps", "build/b.o"],
    );
}

#[test]
fn bad_toml() {
    rejects(
        "[target.a]\nrun = 'x\n",
        "2:9",
        &["invalid literal string", "TOML syntax"],
    );
}

#[test]
fn wrong_value_type() {
    rejects(
        "[target.a]\nrun = 'x'\nversion = 'two'\n",
        "3:11",
        &["integer"],
    );
}

#[test]
fn bad_include_dependency_entry() {
    rejects(
        "[target.a]\nrun = 'x'\ninclude_dependency = [{ path = 'a.c', track = false }]\n",
        "3:23",
        &["unknown key `track`"],
    );
}

#[test]
fn no_manifest_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.arg("-C").arg(dir.path()).arg("build");
    let r = output(c);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["no relocache.toml"]);
}

#[test]
fn huge_chains_and_cycles_are_planned_or_refused_without_overflowing() {
    const N: usize = 50_000;
    let chain: String = (0..N)
        .map(|i| {
            let deps = if i > 0 {
                format!("deps = [\"t{}\"]\n", i - 1)
            } else {
                String::new()
            };
            format!("[target.t{i}]\nrun = \"true\"\n{deps}outputs = [\"o{i}\"]\n")
        })
        .collect();
    let p = Project::new(&chain, &[]);
    let r = p.run(&["status", "--json"]);
    assert_eq!(r.code, 0, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    let cycle: String = (0..N)
        .map(|i| {
            format!(
                "[target.t{i}]\nrun = \"true\"\ndeps = [\"t{}\"]\noutputs = [\"o{i}\"]\n",
                (i + N - 1) % N
            )
        })
        .collect();
    p.write("relocache.toml", &cycle);
    let r = p.run(&["status"]);
    assert_eq!(r.code, 2, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    assert!(
        r.stderr.contains("dependency cycle: t0 -> "),
        "{}",
        &r.stderr[..r.stderr.len().min(2000)]
    );
    assert!(r.stderr.len() < 2000, "the cycle is shortened");
}

#[test]
fn tools_table_with_an_unknown_key() {
    rejects(
        "[target.a]\nrun = 'x'\ntools = [{ name = 'cc', chek = 'cc -v' }]\n",
        "3:10",
        &["unknown key `chek` in a tools entry", "check ="],
    );
    rejects(
        "[defaults]\ntools = ['cc', { name = 'cc', version = 1 }]\n[target.a]\nrun = 'x'\n",
        "2:16",
        &["unknown key `version` in a tools entry"],
    );
}

#[test]
fn tools_table_without_a_name() {
    rejects(
        "[target.a]\nrun = 'x'\ntools = [{ check = 'cc -v' }]\n",
        "3:10",
        &["needs a string `name`"],
    );
    rejects(
        "[target.a]\nrun = 'x'\ntools = [{ name = 'cc', check = '' }]\n",
        "3:10",
        &["`check` of tool `cc`"],
    );
}

//! What `relocache build` prints: which command output each `--logs` mode
//! (and a target's `logs =`) shows, and one line per target or a progress
//! bar for a large build on a terminal. Driven through the real binary.

mod common;

use common::*;

/// Two targets whose commands warn on stderr and talk on stdout.
fn warners(extra: &str) -> Project {
    Project::new(
        &format!(
            "[target.a]\nrun = 'echo a-out; echo a-warning >&2; touch a.o'\noutputs = ['a.o']\n{extra}\n\
             [target.b]\nrun = 'echo b-out; echo b-warning >&2; touch b.o'\noutputs = ['b.o']\n"
        ),
        &[],
    )
}

#[test]
fn a_no_op_build_replays_nothing_by_default_and_says_so_once() {
    let p = warners("");
    let first = p.run(&["build"]);
    first.ok().assert_stdout_has(&["a-out", "b-out"]);
    first.assert_stderr_has(&["a-warning", "b-warning"]);
    first.assert_stderr_lacks(&["note:"]);

    let noop = p.run(&["build", "-j", "1"]); // one worker: the lines in a fixed order
    noop.ok().assert_stdout_lacks(&["a-out", "b-out"]);
    noop.assert_stderr_lacks(&["a-warning", "b-warning"]);
    assert_eq!(
        noop.stderr.matches("--logs=full").count(),
        1,
        "one note for every hit, not one per target\n{}",
        noop.render()
    );
    assert_cli_snapshot!(p.tmp.path(), noop);

    let full = p.run(&["build", "--logs=full"]);
    full.ok().assert_stdout_has(&["a-out", "b-out"]);
    full.assert_stderr_has(&["a-warning", "b-warning"]);
    full.assert_stderr_lacks(&["note:"]);
}

#[test]
fn logs_full_on_a_target_replays_its_hits_and_the_flag_overrides_it() {
    let p = warners("logs = 'full'");
    p.run(&["build"]).ok();
    let noop = p.run(&["build"]);
    noop.ok().assert_stdout_has(&["a-out"]);
    noop.assert_stderr_has(&["a-warning"]);
    noop.assert_stdout_lacks(&["b-out"]);
    noop.assert_stderr_lacks(&["b-warning"]);
    noop.assert_stderr_has(&["note: 1 hit has stored command output"]);

    let flag = p.run(&["build", "--logs=new-only"]);
    flag.ok().assert_stdout_lacks(&["a-out", "b-out"]);
    flag.assert_stderr_lacks(&["a-warning", "b-warning", "note:"]);
}

#[test]
fn logs_none_hides_the_output_of_commands_that_run() {
    let p = warners("");
    let r = p.run(&["build", "--logs=none"]);
    r.ok().assert_stdout_lacks(&["a-out", "b-out"]);
    r.assert_stderr_lacks(&["a-warning", "b-warning"]);
    r.assert_stderr_has(&["built a", "built b"]);
}

#[test]
fn errors_only_shows_a_failing_command_and_not_a_passing_one() {
    let p = Project::new(
        "[target.good]\nrun = 'echo good-warning >&2; touch g'\noutputs = ['g']\n\
         [target.bad]\nrun = 'echo bad-error >&2; exit 3'\noutputs = ['b']\n",
        &[],
    );
    let r = p.run(&["build", "--logs=errors-only"]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["bad-error", "failed bad", "built good"]);
    r.assert_stderr_lacks(&["good-warning"]);
}

#[test]
fn an_unknown_logs_flag_is_refused_with_the_choices() {
    let p = warners("");
    let r = p.run(&["build", "--logs=errors"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["errors", "full", "new-only", "errors-only", "none"]);
    assert_eq!(p.total_runs(), 0);
    assert!(!p.path("a.o").exists(), "nothing ran");
}

#[test]
fn an_unknown_logs_key_is_refused_with_its_place_and_the_choices() {
    let p = warners("logs = 'quiet'");
    let r = p.run(&["build"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&[
        "relocache.toml:4:8",
        "unknown logs mode `quiet`",
        "full, new-only, errors-only, none",
    ]);
    assert!(!p.path("a.o").exists(), "nothing ran");
}

#[test]
fn json_stays_data_and_replayed_stdout_goes_to_stderr() {
    let p = warners("");
    p.run(&["build"]).ok();
    let r = p.build(&["--logs=full"]);
    r.ok();
    assert_eq!(r.json()["hits"], 2);
    r.assert_stderr_has(&["a-out", "a-warning"]);
    r.assert_stdout_lacks(&["a-out", "a-warning"]);
}

/// `n` independent targets `t00`… that each warn on stderr.
fn many(n: usize) -> Project {
    let mut m = String::new();
    for i in 0..n {
        m.push_str(&format!(
            "[target.t{i:02}]\nrun = 'echo warning-{i:02} >&2; touch o{i:02}'\noutputs = ['o{i:02}']\n"
        ));
    }
    Project::new(&m, &[])
}

#[test]
fn many_targets_get_one_line_each_when_stderr_is_not_a_terminal() {
    let p = many(25);
    let r = p.run(&["build"]);
    r.ok();
    for i in 0..25 {
        r.assert_stderr_has(&[&format!("built t{i:02}"), &format!("warning-{i:02}")]);
    }
    let noop = p.run(&["build"]);
    noop.ok();
    for i in 0..25 {
        noop.assert_stderr_has(&[&format!("hit t{i:02}")]);
    }
    noop.assert_stderr_lacks(&["warning-"]);
}

/// Runs `relocache ARGS` in `p` with stderr on a pseudo-terminal (python3's
/// `pty`, 120 columns) and stdout on a pipe; returns (exit code, what the
/// terminal received).
fn on_a_terminal(p: &Project, args: &[&str]) -> (i32, String) {
    const DRIVER: &str = r#"
import fcntl, os, pty, struct, subprocess, sys, termios
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
seen = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
code = child.wait()
sys.stdout.buffer.write(seen)
sys.exit(code)
"#;
    let relocache = std::path::PathBuf::from(env!("CARGO_BIN_EXE_relocache"));
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(relocache)
        .arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .args(args)
        .env("TERM", "xterm")
        .env_remove("RELOCACHE_DEPOT")
        .env_remove("RELOCACHE_DEPOT_PATH")
        .env_remove("RELOCACHE_REMOTE")
        .output()
        .expect("this test needs python3 (its pty module drives the terminal)");
    assert!(
        out.stderr.is_empty(),
        "the pty driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn many_targets_on_a_terminal_draw_a_bar_and_print_failures_above_it() {
    let p = many(24);
    p.write(
        "relocache.toml",
        &(p.read("relocache.toml")
            + "[target.broken]\nrun = 'echo broken-error >&2; exit 1'\noutputs = ['x']\n"),
    );
    let (code, seen) = on_a_terminal(&p, &["build"]);
    assert_eq!(code, 1, "{seen}");
    assert!(seen.contains("/25"), "the bar counts done/total\n{seen}");
    assert!(seen.contains(" built, "), "the bar counts outcomes\n{seen}");
    assert!(seen.contains("failed broken"), "{seen}");
    assert!(seen.contains("broken-error"), "{seen}");
    assert!(
        seen.contains("warning-07"),
        "new output shows above the bar\n{seen}"
    );
    assert!(
        !seen.contains("built t07"),
        "the bar replaces one line per target\n{seen}"
    );
    assert!(
        seen.contains("25 targets: 0 hit, 24 built, 1 failed"),
        "{seen}"
    );

    // A small build on the same terminal keeps its lines.
    let small = many(3);
    let (code, seen) = on_a_terminal(&small, &["build"]);
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("built t01"), "{seen}");
}

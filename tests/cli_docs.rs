//! The documentation the binary ships: `--help` examples, shell completions
//! and the man page, checked through the real binary.

use std::process::{Command, Output};

/// Every subcommand a user can type, as `relocache --help` lists them.
const SUBCOMMANDS: &[&str] = &[
    "build",
    "init",
    "status",
    "explain",
    "graph",
    "key",
    "path",
    "verify",
    "pack",
    "unpack",
    "hash",
    "gc",
    "clear",
    "stats",
    "remote",
    "completions",
    "man",
];

fn relocache(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_relocache"))
        .args(args)
        .output()
        .expect("run relocache");
    assert!(
        out.status.success(),
        "relocache {args:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(relocache(args).stdout).expect("stdout is UTF-8")
}

#[test]
fn top_level_help_has_examples() {
    let help = stdout(&["--help"]);
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("relocache build"), "{help}");
    assert!(help.contains("relocache completions bash"), "{help}");
}

#[test]
fn bash_completions_name_every_subcommand() {
    let script = stdout(&["completions", "bash"]);
    assert!(script.contains("complete -F"), "{script}");
    let missing: Vec<_> = SUBCOMMANDS
        .iter()
        .filter(|c| !script.contains(&format!("relocache__subcmd__{c}")))
        .collect();
    assert!(missing.is_empty(), "not completed: {missing:?}\n{script}");
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains("unpack"), "{shell}:\n{script}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_relocache"))
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_page_parses_and_names_the_subcommands() {
    let page = stdout(&["man"]);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH relocache 1"), "{page}");
    for c in SUBCOMMANDS {
        assert!(
            page.contains(&format!("relocache\\-{c}")),
            "{c} missing:\n{page}"
        );
    }
    // man(1) must render the page without a warning (.ci/deps installs man-db).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relocache.1");
    std::fs::write(&file, &page).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "100")
        .output()
        .expect("man(1) runs: install man-db (.ci/deps does)");
    let text = without_overstrike(&String::from_utf8_lossy(&rendered.stdout));
    let warnings = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "man -l failed:\n{warnings}");
    assert!(!warnings.contains("warning"), "{warnings}");
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    assert!(text.contains("relocache-unpack"), "{text}");
}

/// Drops the `X\x08` pairs man(1) uses for bold and underline on a non-terminal.
fn without_overstrike(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn readme_is_short_and_opens_with_the_fresh_machine_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes: move reference text to docs/",
        readme.len()
    );
    let commands: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take(2)
        .collect();
    assert!(
        commands[0].starts_with(
            "cargo run --release -- -C fixtures/c-demo build && fixtures/c-demo/build/c-demo"
        ),
        "{commands:?}"
    );
    assert!(
        commands[1].starts_with(".ci/deps && cargo test "),
        "{commands:?}"
    );
}

//! Tools: what each `tools` entry of a target resolves to, and the digest it
//! contributes to the key.
//!
//! A tool is keyed by the *content* of the executable that really runs. A
//! launcher found on PATH is resolved first, with the build's environment
//! (the project root as working directory, `$PWD` as commands see it), so
//! `RUSTUP_TOOLCHAIN`, `rust-toolchain.toml`, `PYENV_VERSION` and
//! `.python-version` are honoured:
//!
//! - a rustup proxy (a link to, or a copy of, the `rustup` beside it) by
//!   `rustup which NAME`;
//! - a shim (`…/shims/NAME`) by the first of `pyenv`, `rbenv`, `nodenv`,
//!   `asdf`, `mise` on PATH whose `which NAME` answers.
//!
//! A `check` command's standard output enters the key too, beside the content
//! (ccache's `compiler_check`): for wrappers no rule here can see through.
//! A launcher that cannot be resolved, or a script that reads like one, is
//! a [`ToolWarning`] unless the tool has a `check`.
//!
//! This module runs only those resolving and checking commands; it never
//! writes a file and never prints.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use crate::digest::Digest;
use crate::file_hash::hash_file;
use crate::file_state::Stamp;
use crate::manifest::Tool;
use crate::memo::StatMemo;

/// blake3 `derive_key` context for the digest of a tool with a `check`.
const CHECK_CONTEXT: &str = "relocache tool check v1";

/// Version managers whose shims are resolved with `MANAGER which NAME`.
const SHIM_MANAGERS: [&str; 5] = ["pyenv", "rbenv", "nodenv", "asdf", "mise"];

/// Why a tool could not be keyed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Neither on PATH nor in the project.
    #[error("tool `{0}` was not found on PATH\n  help: install it, or remove it from `tools`")]
    NotFound(String),
    /// Its `check` command could not run or exited non-zero.
    #[error("the check of tool `{tool}`, `{check}`, failed ({status}){}\n  help: fix the command so it prints the tool's version and exits 0 in the project root, or remove `check`", stderr_excerpt(.stderr))]
    CheckFailed {
        /// The tool's name.
        tool: String,
        /// The check command.
        check: String,
        /// Its exit status, or why it could not start.
        status: String,
        /// The end of what it wrote to standard error.
        stderr: String,
    },
    /// The executable could not be read.
    #[error("could not read tool `{tool}` at `{}`: {source}", .path.display())]
    Io {
        /// The tool's name.
        tool: String,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn stderr_excerpt(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(":\n    {}", s.trim_end().replace('\n', "\n    "))
    }
}

/// A tool that is keyed by a launcher's content, so the key may not change
/// when the program it launches does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolWarning {
    /// The tool's name.
    pub tool: String,
    /// The file whose content is keyed.
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: ToolWarningKind,
}

/// Why a [`ToolWarning`] was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolWarningKind {
    /// A rustup proxy whose `rustup which` failed (its message).
    RustupUnresolved(String),
    /// A `shims/` entry that none of the version managers on PATH resolved.
    ShimUnresolved,
    /// A `#!` script that reads like a shim or wrapper.
    LooksLikeLauncher,
}

impl std::fmt::Display for ToolWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tool, path) = (&self.tool, self.path.display());
        match &self.kind {
            ToolWarningKind::RustupUnresolved(why) => write!(
                f,
                "tool `{tool}` is the rustup proxy `{path}` and `rustup which {tool}` failed ({why}): the key holds the proxy, which is the same for every toolchain"
            )?,
            ToolWarningKind::ShimUnresolved => write!(
                f,
                "tool `{tool}` is the shim `{path}`, which no version manager on PATH ({}) resolved: the key holds the shim, not the program it runs",
                SHIM_MANAGERS.join(", ")
            )?,
            ToolWarningKind::LooksLikeLauncher => write!(
                f,
                "tool `{tool}` resolved to `{path}`, a script that looks like a shim or wrapper: the key holds the script, not the program it runs"
            )?,
        }
        let name = Path::new(tool)
            .file_name()
            .map_or(tool.clone(), |n| n.to_string_lossy().into_owned());
        let run = if tool.contains('/') {
            format!("./{}", tool.trim_start_matches("./"))
        } else {
            name
        };
        write!(
            f,
            "\n  help: key it by what it reports: tools = [{{ name = \"{tool}\", check = \"{run} --version\" }}]"
        )
    }
}

/// One resolved tool.
#[derive(Debug, Clone)]
struct Resolved {
    digest: Digest,
    warning: Option<ToolWarning>,
}

/// Resolves and digests tools for one build, each once.
#[derive(Debug)]
pub struct Tools {
    root: PathBuf,
    pwd: PathBuf,
    memo: Mutex<HashMap<Tool, Digest>>,
}

impl Tools {
    /// Tools of the project at `root`, resolved as commands there see it
    /// (`pwd` is their `$PWD`).
    pub fn new(root: &Path, pwd: PathBuf) -> Tools {
        Tools {
            root: root.to_path_buf(),
            pwd,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Each tool's digest by name, and the warnings of the tools this call
    /// resolved first (a tool warns once per build). An executable whose
    /// stat `memo` vouches for is not hashed again.
    pub fn digests(
        &self,
        tools: &[Tool],
        memo: Option<&StatMemo>,
    ) -> Result<(BTreeMap<String, Digest>, Vec<ToolWarning>), ToolError> {
        let mut out = BTreeMap::new();
        let mut warnings = Vec::new();
        for tool in tools {
            if let Some(d) = self.memo.lock().unwrap().get(tool) {
                out.insert(tool.name.clone(), *d);
                continue;
            }
            let r = self.resolve(tool, memo)?;
            if self
                .memo
                .lock()
                .unwrap()
                .insert(tool.clone(), r.digest)
                .is_none()
            {
                warnings.extend(r.warning);
            }
            out.insert(tool.name.clone(), r.digest);
        }
        Ok((out, warnings))
    }

    fn resolve(&self, tool: &Tool, memo: Option<&StatMemo>) -> Result<Resolved, ToolError> {
        let found = find_tool(&self.root, &tool.name)
            .ok_or_else(|| ToolError::NotFound(tool.name.clone()))?;
        let (exe, mut warning) = self.through_launcher(&tool.name, &found);
        let io = |source| ToolError::Io {
            tool: tool.name.clone(),
            path: exe.clone(),
            source,
        };
        // The memo names no path inside the project (it would name the root).
        let inside = exe.starts_with(&self.root) || exe.starts_with(&self.pwd);
        let content = exe_digest(&exe, memo.filter(|_| !inside)).map_err(io)?;
        if warning.is_none() && looks_like_launcher(&exe) {
            warning = Some(ToolWarning {
                tool: tool.name.clone(),
                path: exe.clone(),
                kind: ToolWarningKind::LooksLikeLauncher,
            });
        }
        let Some(check) = &tool.check else {
            return Ok(Resolved {
                digest: content,
                warning,
            });
        };
        let stdout = self.run_check(tool, check)?;
        let mut h = blake3::Hasher::new_derive_key(CHECK_CONTEXT);
        h.update(&content.0);
        h.update(&(check.len() as u64).to_le_bytes());
        h.update(check.as_bytes());
        h.update(&stdout);
        Ok(Resolved {
            digest: Digest(*h.finalize().as_bytes()),
            // The check identifies the program: no launcher to warn about.
            warning: None,
        })
    }

    /// The executable `found` runs for `name`: itself, or what its launcher
    /// resolves it to, with a warning when a launcher could not be resolved.
    fn through_launcher(&self, name: &str, found: &Path) -> (PathBuf, Option<ToolWarning>) {
        let warn = |kind| {
            Some(ToolWarning {
                tool: name.to_owned(),
                path: found.to_path_buf(),
                kind,
            })
        };
        let Some(program) = found.file_name().and_then(|n| n.to_str()) else {
            return (found.to_path_buf(), None);
        };
        if let Some(rustup) = rustup_proxy(found) {
            return match self.which(&rustup, program) {
                Ok(real) => (real, None),
                Err(why) => (
                    found.to_path_buf(),
                    warn(ToolWarningKind::RustupUnresolved(why)),
                ),
            };
        }
        if is_shim(found) {
            let text = found.to_string_lossy();
            // Managers named in the shim's path first (`~/.pyenv/shims`).
            let mut managers = SHIM_MANAGERS.to_vec();
            managers.sort_by_key(|m| !text.contains(m));
            for m in managers {
                let Some(manager) = find_tool(&self.root, m) else {
                    continue;
                };
                // A manager may find the shim itself on PATH (pyenv's
                // `system` version): that resolves nothing.
                match self.which(&manager, program) {
                    Ok(real) if !is_shim(&real) && !same_file(&real, found) => return (real, None),
                    _ => {}
                }
            }
            return (found.to_path_buf(), warn(ToolWarningKind::ShimUnresolved));
        }
        (found.to_path_buf(), None)
    }

    /// `MANAGER which PROGRAM` in the project, as commands run there: the
    /// executable it names, or why not.
    fn which(&self, manager: &Path, program: &str) -> Result<PathBuf, String> {
        let out = std::process::Command::new(manager)
            .arg("which")
            .arg(program)
            .current_dir(&self.root)
            .env("PWD", &self.pwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run `{}`: {e}", manager.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.trim());
        if out.status.success() && path.is_absolute() && path.is_file() {
            return Ok(path);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(match stderr.trim().lines().last() {
            Some(l) => format!("{}: {l}", out.status),
            None => out.status.to_string(),
        })
    }

    /// `sh -c CHECK` in the project root with the build's environment: its
    /// standard output, or an error when it does not exit 0.
    fn run_check(&self, tool: &Tool, check: &str) -> Result<Vec<u8>, ToolError> {
        let failed = |status: String, stderr: &[u8]| {
            let text = String::from_utf8_lossy(stderr);
            let lines: Vec<&str> = text.trim_end().lines().collect();
            ToolError::CheckFailed {
                tool: tool.name.clone(),
                check: check.to_owned(),
                status,
                stderr: lines[lines.len().saturating_sub(5)..].join("\n"),
            }
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(check)
            .current_dir(&self.root)
            .env("PWD", &self.pwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("could not start `sh`: {e}"), b""))?;
        if !out.status.success() {
            return Err(failed(out.status.to_string(), &out.stderr));
        }
        Ok(out.stdout)
    }
}

/// The `rustup` that `found` is a proxy of: `found` links to it, or is a
/// hard link or copy of the `rustup` beside it.
fn rustup_proxy(found: &Path) -> Option<PathBuf> {
    let name = found.file_name()?.to_str()?;
    if name.starts_with("rustup") {
        return None;
    }
    let real = std::fs::canonicalize(found).ok()?;
    if real.file_name()?.to_str()?.starts_with("rustup") {
        return Some(real);
    }
    let beside = found.with_file_name("rustup");
    let (a, b) = (
        std::fs::metadata(found).ok()?,
        std::fs::metadata(&beside).ok()?,
    );
    let same = (a.dev(), a.ino()) == (b.dev(), b.ino())
        || (a.len() == b.len() && hash_file(found).ok()?.0 == hash_file(&beside).ok()?.0);
    same.then_some(beside)
}

/// A version manager's shim: `…/shims/NAME`.
fn is_shim(path: &Path) -> bool {
    path.parent().and_then(|d| d.file_name()) == Some("shims".as_ref())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// A `#!` script whose first lines read like a version manager's shim or
/// a wrapper that hands its arguments to another program.
/// The blake3 of executable `exe`, from `memo` when its stat is unchanged
/// (a compiler of a few MB is otherwise hashed by every build).
fn exe_digest(exe: &Path, memo: Option<&StatMemo>) -> std::io::Result<Digest> {
    let Some(memo) = memo else {
        return Ok(hash_file(exe)?.0);
    };
    let stamp = Stamp::of(&std::fs::metadata(exe)?);
    if let Some(d) = memo.lookup_outside(exe, &stamp) {
        return Ok(d);
    }
    let (d, _) = hash_file(exe)?;
    memo.record_outside(exe, stamp, d);
    Ok(d)
}

fn looks_like_launcher(path: &Path) -> bool {
    let mut head = Vec::with_capacity(4096);
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    if read.is_err() || !head.starts_with(b"#!") {
        return false;
    }
    let text = String::from_utf8_lossy(&head).to_lowercase();
    ["shim", "pyenv", "rbenv", "asdf", "exec \"$"]
        .iter()
        .any(|w| text.contains(w))
}

/// The executable `name` names: a path relative to `root` when it has a
/// `/`, else the first executable file of that name on PATH.
pub fn find_tool(root: &Path, name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = root.join(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_scripts_are_recognized() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("#!/usr/bin/env bash\nexec \"/root/.pyenv/libexec/pyenv\" exec \"$program\" \"$@\"\n", true),
            ("#!/bin/sh\n# asdf-plugin shim\nexec asdf exec x \"$@\"\n", true),
            ("#!/bin/sh\nexec \"$REAL_CC\" \"$@\"\n", true),
            ("#!/bin/sh\necho hello\n", false),
            ("\x7fELF shim pyenv", false),
        ];
        for (i, (text, expected)) in cases.iter().enumerate() {
            let p = dir.path().join(format!("t{i}"));
            std::fs::write(&p, text).unwrap();
            assert_eq!(looks_like_launcher(&p), *expected, "{text:?}");
        }
    }

    #[test]
    fn a_link_or_copy_of_rustup_is_a_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let rustup = dir.path().join("rustup");
        std::fs::write(&rustup, b"the rustup binary").unwrap();
        let link = dir.path().join("rustc");
        std::os::unix::fs::symlink("rustup", &link).unwrap();
        let hard = dir.path().join("cargo");
        std::fs::hard_link(&rustup, &hard).unwrap();
        let copy = dir.path().join("rustdoc");
        std::fs::write(&copy, b"the rustup binary").unwrap();
        let other = dir.path().join("rg");
        std::fs::write(&other, b"ripgrep, installed by cargo").unwrap();
        let real = std::fs::canonicalize(&rustup).unwrap();
        assert_eq!(rustup_proxy(&link), Some(real));
        assert_eq!(rustup_proxy(&hard), Some(rustup.clone()));
        assert_eq!(rustup_proxy(&copy), Some(rustup.clone()));
        assert_eq!(rustup_proxy(&other), None);
        assert_eq!(rustup_proxy(&rustup), None, "rustup itself is no proxy");
    }

    #[test]
    fn a_check_is_keyed_by_its_output_beside_the_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool"), "#!/bin/sh\necho v1\n").unwrap();
        std::fs::write(dir.path().join("version"), "1\n").unwrap();
        let tools = Tools::new(dir.path(), dir.path().to_path_buf());
        let plain = Tool {
            name: "./tool".into(),
            check: None,
        };
        let checked = Tool {
            name: "./tool".into(),
            check: Some("cat version".into()),
        };
        let (a, _) = tools.digests(std::slice::from_ref(&plain), None).unwrap();
        let (b, _) = tools.digests(std::slice::from_ref(&checked), None).unwrap();
        assert_ne!(a["./tool"], b["./tool"]);
        std::fs::write(dir.path().join("version"), "2\n").unwrap();
        let fresh = Tools::new(dir.path(), dir.path().to_path_buf());
        let (c, _) = fresh.digests(&[checked], None).unwrap();
        assert_ne!(b["./tool"], c["./tool"]);
        let (d, _) = fresh.digests(&[plain], None).unwrap();
        assert_eq!(a["./tool"], d["./tool"]);
    }

    #[test]
    fn a_failing_check_names_the_tool_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool"), "x").unwrap();
        let tools = Tools::new(dir.path(), dir.path().to_path_buf());
        let e = tools
            .digests(
                &[Tool {
                    name: "./tool".into(),
                    check: Some("echo nope >&2; exit 3".into()),
                }],
                None,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tool `./tool`") && e.contains("`echo nope >&2; exit 3`"),
            "{e}"
        );
        assert!(
            e.contains("exit status: 3") && e.contains("nope") && e.contains("help:"),
            "{e}"
        );
    }
}

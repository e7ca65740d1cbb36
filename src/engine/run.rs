//! Running one target's command: `sh -c` for `run`, direct exec for
//! `command`, in the project root, with stdout and stderr captured so they
//! can be shown once and stored for replay. It never looks at the depot nor
//! decides whether a command runs: that is `target`'s.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::manifest::Command;

/// What a command did.
#[derive(Debug)]
pub struct RunResult {
    /// Exit status 0.
    pub success: bool,
    /// "exit status 2", "killed by signal 9", …
    pub status: String,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Wall time.
    pub duration: Duration,
}

/// The name commands see in `$PWD` for `root`: shells and compilers (gcc's
/// `DW_AT_comp_dir`) take `$PWD` as the current directory's name when it
/// names it. Entered through a symlink, that is the caller's spelling (the
/// one users write into flags such as `-ffile-prefix-map=$PWD=.`), which
/// relocache also maps to `@project` and scans outputs for; otherwise the
/// real path, never a stale `$PWD` naming another directory.
pub(crate) fn pwd_for(root: &Path) -> PathBuf {
    let real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    crate::key::logical_spelling(&real).unwrap_or(real)
}

/// Clears close-on-exec on a descriptor until dropped.
struct Inherit(RawFd);

impl Inherit {
    fn new(fd: RawFd) -> Inherit {
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        Inherit(fd)
    }
}

impl Drop for Inherit {
    fn drop(&mut self) {
        // SAFETY: as above; the lock outlives this guard.
        unsafe { libc::fcntl(self.0, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Runs `cmd` in `root`, with `$PWD` set to `pwd` (see [`pwd_for`]).
/// Errors only when the process cannot be started.
///
/// The command inherits `lock_fd`, the key's build lock, so that when
/// relocache is killed mid-build, the command and anything it started
/// still hold the key: a retry waits for them rather than writing the
/// same outputs beside them.
pub fn run(
    cmd: &Command,
    root: &Path,
    pwd: &Path,
    lock_fd: Option<RawFd>,
) -> std::io::Result<RunResult> {
    let mut proc = match cmd {
        Command::Shell(line) => {
            let mut p = std::process::Command::new("sh");
            p.arg("-c").arg(line);
            p
        }
        Command::Argv(argv) => {
            let prog = Path::new(&argv[0]);
            // A relative program with a `/` is relative to the project root.
            let prog = if argv[0].contains('/') && prog.is_relative() {
                root.join(prog)
            } else {
                prog.to_path_buf()
            };
            let mut p = std::process::Command::new(prog);
            p.args(&argv[1..]);
            p
        }
    };
    // The key's lock goes to the command: close-on-exec is off while it is
    // spawned (other commands spawned meanwhile may inherit it too, which
    // only makes a retry after a crash wait for them as well). Not a
    // `pre_exec` hook: that forces fork over posix_spawn, milliseconds per
    // command in a process this size.
    let _inherit = lock_fd.map(Inherit::new);
    proc.current_dir(root)
        .env("PWD", pwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = proc.output()?;
    let status = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".to_owned(),
    };
    Ok(RunResult {
        success: out.status.success(),
        status,
        stdout: out.stdout,
        stderr: out.stderr,
        duration: start.elapsed(),
    })
}

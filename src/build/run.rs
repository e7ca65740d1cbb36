//! Running one target's command: `sh -c` for `run`, direct exec for
//! `command`, in the project root, with stdout and stderr captured so they
//! can be shown once and stored for replay.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
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
fn pwd_for(root: &Path) -> &'static Path {
    static PWD: OnceLock<PathBuf> = OnceLock::new();
    PWD.get_or_init(|| {
        let real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        crate::key::logical_spelling(&real).unwrap_or(real)
    })
}

/// Runs `cmd` in `root`. Errors only when the process cannot be started.
///
/// The command dies with this process (it gets SIGKILL if relocache is
/// killed), and it inherits `lock_fd`, the key's build lock, so that
/// anything it started that outlives both still holds the key: a retry
/// waits for it rather than writing the same outputs beside it.
pub fn run(cmd: &Command, root: &Path, lock_fd: Option<RawFd>) -> std::io::Result<RunResult> {
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
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe
    // functions (fcntl, prctl, getppid) and allocates nothing.
    unsafe {
        proc.pre_exec(move || {
            if let Some(fd) = lock_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // relocache died before the prctl took effect: do not run.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    proc.current_dir(root)
        .env("PWD", pwd_for(root))
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

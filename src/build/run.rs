//! Running one target's command: `sh -c` for `run`, direct exec for
//! `command`, in the project root, with stdout and stderr captured so they
//! can be shown once and stored for replay.

use std::path::Path;
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

/// Runs `cmd` in `root`. Errors only when the process cannot be started.
pub fn run(cmd: &Command, root: &Path) -> std::io::Result<RunResult> {
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
    proc.current_dir(root)
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

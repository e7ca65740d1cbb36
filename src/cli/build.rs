//! `relocache build`: renders a [`BuildReport`] as one line per target and a
//! summary, replays captured output, and maps failures to exit 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use clap::Args;

use relocache::engine::restore::RestoreMode;
use relocache::engine::{build, BuildOptions, BuildReport, Outcome, TargetReport, WarningKind};
use relocache::manifest::LogMode;
use relocache::report::Reporter;
use relocache::timings;

use super::progress::{self, BuildBar};
use super::replay::{self, Replay, Verdict};
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache build                 everything, in dependency order
  relocache build app             `app` and what it depends on
  relocache build -j 1            one target at a time
  relocache build --json          {\"targets\":[{\"name\",\"key\",\"outcome\"}],\"hits\",\"built\",\"failed\",\"skipped\"}
  relocache build --timings       also write relocache-timings.html (timeline, critical path)
  relocache build --timings=t.html --profile trace.json   open trace.json in ui.perfetto.dev
  relocache build --logs=full     also replay the stored output of hits
  relocache build --logs=errors-only   show only failing commands' output

Command output (--logs, else a target's `logs =`, else new-only): `full` shows every
target's stdout and stderr, replaying a hit's from the cache; `new-only` those of the
commands that ran (built or failed), so a no-op build is silent; `errors-only` only
failed commands'; `none` nothing. One note after the build counts the hits whose output
the default did not replay. -q hides the `hit`/`built` lines, not command output.
(`--log FILTER` is another thing: relocache's own diagnostics.)
With more than 20 targets and stderr on a terminal, a progress bar (done/total, hits,
built, failed, running targets) replaces the per-target lines; failures, warnings and
command output still print above it.

With a remote cache ([remote] in relocache.toml, or RELOCACHE_REMOTE=<url>), a local
miss is looked up there and a new result uploaded; remote problems are warnings, never
failures. See `relocache remote --help`.

Outputs are restored as copies: reflinks where the filesystem supports them, else
plain copies (RELOCACHE_RESTORE=copy forces those), with the exact permission bits
the build left. RELOCACHE_RESTORE=hardlink links uncompressed blobs whose file has the
output's mode into the project instead (no bytes written); an edit made through such
a link damages the depot's blob, which the next read of it and `relocache verify
--integrity` catch (it is quarantined and the target rebuilt). relocache never writes
or deletes through a symlink: a target whose output lies below a symlinked directory
fails.

Exit status: 0 when every target hit or built, 1 when one failed or was skipped,
2 for a bad manifest, unknown target or bad remote settings.")]
pub struct BuildArgs {
    /// Targets to build (default: all)
    pub targets: Vec<String>,
    /// Parallel jobs (default: number of cores)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Fail (exit 1) instead of warning when a target's entry, new or restored, is not relocatable
    #[arg(long)]
    pub require_relocatable: bool,
    /// Rebuild the named targets (default: all) even when cached, and overwrite their entries
    #[arg(long)]
    pub force: bool,
    /// Write an HTML timeline of the build to PATH (default: relocache-timings.html in the project root)
    #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true)]
    pub timings: Option<Option<PathBuf>>,
    /// Write a Chrome trace-event JSON of the build to FILE (Perfetto, chrome://tracing)
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Which command output to show; overrides every target's `logs =` (default: new-only)
    #[arg(long, value_name = "MODE", value_parser = replay::parser())]
    pub logs: Option<LogMode>,
}

/// Prints per-target lines as targets finish, or keeps a [`BuildBar`] for
/// a large build on a terminal, with failures and warnings above it.
struct Printer {
    json: bool,
    quiet: bool,
    /// Which command output to show.
    replay: Replay,
    /// Whether stderr is a terminal, and neither -q nor --json was given:
    /// with both, a large build draws a bar.
    terminal: bool,
    visible: bool,
    bar: OnceLock<BuildBar>,
    lock: Mutex<()>,
    /// Relocatability warnings printed, then held back: a tree compiled
    /// with `-g` would say the same two lines for every object.
    reloc_shown: AtomicUsize,
    reloc_held: AtomicUsize,
    /// Hits with stored output that the default mode did not replay.
    logs_hidden: AtomicUsize,
    /// Targets whose remote entry signing refused, by kind: said once,
    /// after the build.
    unsigned: Mutex<Vec<String>>,
    bad_signature: Mutex<Vec<String>>,
    /// Targets restored from non-relocatable entries built at another
    /// location, in the order they finished: said once, after the build.
    elsewhere: Mutex<Vec<String>>,
}

/// Targets named in a warning said once after the build (the rest counted).
const NAMED: usize = 3;

/// "`a`, `b`, `c` and 4 more": the first [`NAMED`] of `names`.
fn first_named(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(NAMED).map(|n| format!("`{n}`")).collect();
    if names.len() > NAMED {
        shown.push(format!("and {} more", names.len() - NAMED));
    }
    shown.join(", ")
}

impl Printer {
    /// The one warning about hits on non-relocatable entries built at
    /// another location, if there were any.
    fn elsewhere_warning(&self, root: &Path) -> Option<String> {
        let names = self.elsewhere.lock().unwrap();
        let n = names.len();
        if n == 0 {
            return None;
        }
        let help = relocache::depot::entries::ReasonKind::EmbeddedPath
            .help(&root.display().to_string(), "")
            .unwrap_or_default();
        let what = if n == 1 {
            "1 target restored from an entry built at another location embeds".to_owned()
        } else {
            format!("{n} targets restored from entries built at another location embed")
        };
        Some(format!(
            "{what} that location: {}\n  \
             their outputs name paths of the old place (`relocache explain TARGET` says which)\n  \
             help: {help}; then `relocache build --force` rebuilds them",
            first_named(&names),
        ))
    }
}

/// Relocatability warnings shown in full before the rest are counted.
const RELOC_SHOWN: usize = 3;

impl Printer {
    /// Runs `print` above the bar when there is one.
    fn above_bar(&self, print: impl FnOnce()) {
        match self.bar.get() {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the bar, if any, before the summary.
    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish();
        }
    }

    /// Holds back a signing warning (one line per kind after the build);
    /// true when `w` is one.
    fn held_signature(&self, w: &relocache::engine::Warning, target: &str) -> bool {
        let list = match w.kind {
            WarningKind::Unsigned => &self.unsigned,
            WarningKind::BadSignature => &self.bad_signature,
            _ => return false,
        };
        list.lock().unwrap().push(target.to_owned());
        true
    }

    /// One warning per kind of refused signature: how many, the first
    /// targets, what to do.
    fn signature_warnings(&self) -> Vec<String> {
        let said = |names: &[String], had: &str, help: &str| {
            let (entries, were) = match names.len() {
                1 => ("entry", "was"),
                _ => ("entries", "were"),
            };
            format!(
                "{} remote {entries} had {had} and {were} not used ({}); built here instead\n  help: {help}",
                names.len(),
                first_named(names)
            )
        };
        let mut out = Vec::new();
        let unsigned = self.unsigned.lock().unwrap();
        if !unsigned.is_empty() {
            out.push(said(
                &unsigned,
                "no signature",
                "signing is on, so only entries uploaded with the signing key are restored; a read-write build with the key uploads signed ones (entries uploaded before signing was turned on are replaced as they are rebuilt)",
            ));
        }
        let bad = self.bad_signature.lock().unwrap();
        if !bad.is_empty() {
            out.push(said(
                &bad,
                "a wrong signature",
                "the entry was written by someone without this signing key, or signed with another key: check who can write the bucket, and that every uploader has the same key",
            ));
        }
        out
    }

    /// `  built NAME  0.52s`: always for failures and skips, for hits and
    /// builds unless `-q` or a bar counts them.
    fn outcome_line(&self, r: &TargetReport) -> Option<String> {
        let failed = matches!(r.outcome, Outcome::Failed | Outcome::Skipped);
        if self.json || !(failed || !self.quiet && self.bar.get().is_none()) {
            return None;
        }
        let detail = match r.outcome {
            Outcome::Hit => r
                .saved_ms
                .map(|ms| format!("(saved {})", secs(ms)))
                .unwrap_or_default(),
            Outcome::Built => secs(r.duration_ms),
            Outcome::Failed | Outcome::Skipped => r.error.clone().unwrap_or_default(),
        };
        let word = match r.outcome {
            Outcome::Hit => "hit",
            Outcome::Built => "built",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        };
        Some(format!("{word:>8} {}  {detail}", r.name))
    }
}

impl Reporter for Printer {
    fn build_planned(&self, targets: usize) {
        if progress::build_bar_wanted(self.terminal, self.visible, targets) {
            let _ = self.bar.set(BuildBar::new(targets));
        }
    }

    fn target_started(&self, name: &str) {
        if let Some(bar) = self.bar.get() {
            bar.started(name);
        }
    }

    fn target_finished(&self, r: &TargetReport) {
        let _g = self.lock.lock().unwrap();
        if let Some(bar) = self.bar.get() {
            bar.finished(&r.name, r.outcome);
        }
        let line = self.outcome_line(r);
        let verdict = self.replay.verdict(r);
        if verdict == Verdict::HiddenByDefault {
            self.logs_hidden.fetch_add(1, Ordering::Relaxed);
        }
        if r.warnings
            .iter()
            .any(|w| w.kind == WarningKind::BuiltElsewhere)
        {
            self.elsewhere.lock().unwrap().push(r.name.clone());
        }
        let warnings: Vec<_> = r
            .warnings
            .iter()
            .filter(|w| !self.held_signature(w, &r.name))
            .filter(|w| w.kind != WarningKind::BuiltElsewhere)
            .filter(|w| {
                let held = w.kind == WarningKind::NotRelocatable
                    && self.reloc_shown.fetch_add(1, Ordering::Relaxed) >= RELOC_SHOWN;
                if held {
                    self.reloc_held.fetch_add(1, Ordering::Relaxed);
                }
                !held
            })
            .collect();
        let show_logs = verdict == Verdict::Show && !(r.stdout.is_empty() && r.stderr.is_empty());
        if line.is_none() && !show_logs && warnings.is_empty() {
            return;
        }
        self.above_bar(|| {
            let mut err = std::io::stderr().lock();
            if let Some(line) = &line {
                let _ = writeln!(err, "{line}");
            }
            // Command output: stdout to stdout, except under --json, whose
            // stdout is the report.
            if show_logs {
                if self.json {
                    let _ = err.write_all(&r.stdout);
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&r.stdout);
                    let _ = out.flush();
                }
                let _ = err.write_all(&r.stderr);
            }
            for w in warnings {
                let _ = writeln!(err, "warning: {w}");
            }
        });
    }

    fn waiting(&self, target: &str, holder: &str) {
        let _g = self.lock.lock().unwrap();
        self.above_bar(|| {
            eprintln!(" waiting {target}  another build of the same key is running ({holder})")
        });
    }

    fn warning(&self, message: &str) {
        let _g = self.lock.lock().unwrap();
        self.above_bar(|| eprintln!("warning: {message}"));
    }
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

pub fn run(env: &Env, args: &BuildArgs) -> Result<i32> {
    let manifest = env.manifest()?;
    // `--timings PATH` reads PATH as a target (the value is optional, so it
    // needs `=`): say so rather than "unknown target".
    if matches!(args.timings, Some(None)) {
        let path_like = |t: &String| t.contains('/') || t.ends_with(".html");
        if let Some(t) = args
            .targets
            .iter()
            .find(|t| !manifest.has_name(t) && path_like(t))
        {
            return Err(UsageError(format!(
                "`{t}` is not a target\n  help: to write the timings page there, use `--timings={t}` (with `=`)"
            ))
            .into());
        }
    }
    // Checked before building, so a typo does not cost a whole build.
    let timings_path = match &args.timings {
        Some(p) => Some(writable_path(
            p.as_ref()
                .map(|p| env.cwd.join(p))
                .unwrap_or_else(|| manifest.root.join("relocache-timings.html")),
            "--timings",
        )?),
        None => None,
    };
    let profile_path = match &args.profile {
        Some(p) => Some(writable_path(env.cwd.join(p), "--profile")?),
        None => None,
    };
    let restore_mode = RestoreMode::parse(std::env::var("RELOCACHE_RESTORE").ok().as_deref())
        .map_err(|e| UsageError(e.to_string()))?;
    let depots = env.depots(Some(&manifest))?;
    let remote = super::remote::open(Some(&manifest))?;
    let opts = BuildOptions {
        targets: args.targets.clone(),
        jobs: args.jobs.unwrap_or(0),
        require_relocatable: args.require_relocatable,
        force: args.force,
        remote,
        restore_mode,
    };
    let printer = Printer {
        json: env.cli.json,
        quiet: env.cli.quiet,
        replay: Replay::new(args.logs, &manifest),
        terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        visible: !env.cli.json && !env.cli.quiet,
        bar: OnceLock::new(),
        lock: Mutex::new(()),
        reloc_shown: AtomicUsize::new(0),
        reloc_held: AtomicUsize::new(0),
        logs_hidden: AtomicUsize::new(0),
        unsigned: Mutex::new(Vec::new()),
        bad_signature: Mutex::new(Vec::new()),
        elsewhere: Mutex::new(Vec::new()),
    };
    let started = std::time::SystemTime::now();
    let report = build(&manifest, &depots, &opts, &printer);
    printer.finish();
    let report = report?;
    for w in printer.signature_warnings() {
        eprintln!("warning: {w}");
    }
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        let held = printer.reloc_held.load(Ordering::Relaxed);
        if held > 0 {
            eprintln!(
                "warning: {held} more relocatability warning{} like those above (`relocache verify --relocatable` lists every entry)",
                if held == 1 { "" } else { "s" }
            );
        }
        if let Some(w) = printer.elsewhere_warning(&manifest.root) {
            eprintln!("warning: {w}");
        }
        let hidden = printer.logs_hidden.load(Ordering::Relaxed);
        if hidden > 0 && !env.cli.quiet {
            eprintln!(
                "note: {hidden} hit{} stored command output that was not replayed (`relocache build --logs=full` replays it)",
                if hidden == 1 { " has" } else { "s have" }
            );
        }
        eprintln!("{}", summary(&report));
    }
    if report.targets.iter().any(|t| t.stored) {
        super::gc::after_build(env, depots.primary());
    }
    // Written also when the build failed: that is when the picture helps most.
    if let Some(path) = &timings_path {
        let page = timings::html(
            &report,
            &manifest,
            &timings::PageInfo {
                project: manifest.name.clone(),
                generated: humantime::format_rfc3339_seconds(started).to_string(),
            },
        );
        write_file(path, page.as_bytes(), "the timings page")?;
        eprintln!("timings: {}", path.display());
    }
    if let Some(path) = &profile_path {
        let trace = timings::trace(&report, &manifest.name);
        let mut bytes = serde_json::to_vec(&trace)?;
        bytes.push(b'\n');
        write_file(path, &bytes, "the profile")?;
        eprintln!(" profile: {}", path.display());
    }
    Ok(if report.success() { 0 } else { 1 })
}

/// `path`, if its directory exists and it is not a directory itself.
fn writable_path(path: PathBuf, flag: &str) -> Result<PathBuf> {
    if path.is_dir() {
        return Err(UsageError(format!(
            "{flag}: `{}` is a directory\n  help: name a file, e.g. {flag}{}{}",
            path.display(),
            if flag == "--timings" { "=" } else { " " },
            path.join(if flag == "--timings" {
                "timings.html"
            } else {
                "trace.json"
            })
            .display()
        ))
        .into());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "{flag}: the directory `{}` does not exist\n  help: create it first (mkdir -p {})",
                dir.display(),
                dir.display()
            ))
            .into());
        }
    }
    Ok(path)
}

/// Writes `bytes` to `path` via a temp file in the same directory and a
/// rename, so an interrupted write never leaves half a page behind.
fn write_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        // A temp file is private (0600); the page is an ordinary file.
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {what} `{}`", path.display()))
}

fn summary(r: &BuildReport) -> String {
    let saved: u64 = r
        .targets
        .iter()
        .filter_map(|t| t.saved_ms)
        .fold(0, u64::saturating_add);
    let mut s = format!(
        "{} target{}: {} hit, {} built, {} failed, {} skipped in {}",
        r.targets.len(),
        if r.targets.len() == 1 { "" } else { "s" },
        r.hits,
        r.built,
        r.failed,
        r.skipped,
        secs(r.duration_ms)
    );
    // Whenever a hit says what it saved (as its own line does), even 0.00s:
    // a summary that drops it for fast commands reads differently by chance.
    if r.targets.iter().any(|t| t.saved_ms.is_some()) {
        s.push_str(&format!(" (saved {})", secs(saved)));
    }
    s
}

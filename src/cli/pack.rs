//! `relocache pack` and `unpack`: moving a depot through a CI cache or to
//! another machine. Parses arguments, picks the depot, renders the library's
//! summaries ([`relocache::archive`]).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use relocache::archive::{
    self, PackOptions, PackSummary, UnpackOptions, UnpackSummary, DEFAULT_MAX_RATIO,
};
use relocache::depot::entries::Entry;
use relocache::depot::DepotStack;
use relocache::engine::plan::{plan, Planned};
use relocache::units::{format_size, parse_size};

use super::open::optional_manifest;
use super::progress::Bars;
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache pack depot.tar.zst              every entry of the depot and its blobs
  relocache pack ci.tar.zst --current       what the next build needs: each target's current entry
  relocache pack ci.tar.zst lib app         only what `lib` and `app` need now (with their deps)
  relocache pack - | ssh host relocache unpack -
  tar --zstd -tf depot.tar.zst              a standard tar.zst: GNU tar lists and extracts it

The archive is deterministic: the same entries give the same bytes on any machine.
It holds blobs (as stored), entries, DEPOT.toml and CACHEDIR.TAG; never project
records, usage logs, locks or staging files. FILE is written atomically (a
temporary file beside it, then a rename), but not fsync'ed, like `tar` and `zstd`:
after a power loss it may be truncated, which `unpack` detects and refuses whole.
With a signing key set (RELOCACHE_SIGNING_KEY, or the variable `[remote]
signing_key_env` names), every entry is signed, for `unpack --require-signed`.
--fsync makes it durable before pack returns. --current keeps a CI cache bounded:
the archive holds only the entries of the current keys, however many runs came
before; a target with no such entry (its build failed) is left out with a note.
Exit status: 0 packed, 1 a named target has no entry for its current inputs
(without --current; nothing written), 2 usage or manifest error.")]
pub struct PackArgs {
    /// Archive to write (`.tar.zst`), or `-` for stdout
    pub file: PathBuf,
    /// Pack only these targets' current entries, their deps' and their blobs (default: the whole depot)
    pub targets: Vec<String>,
    /// Pack what the next build needs: every target's entry for its current inputs (or only the
    /// named targets' and their deps'), with their blobs; a target without one is left out with a note
    #[arg(long)]
    pub current: bool,
    /// zstd level of the archive, 1-19 (blobs are already compressed, so higher levels gain little)
    #[arg(long, value_name = "N", default_value_t = archive::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Flush the archive to disk (fsync) before returning
    #[arg(long)]
    pub fsync: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache unpack ci.tar.zst               merge into the depot (existing blobs and entries are kept)
  curl -sL $URL | relocache unpack -        stream from stdin; never held in memory
  relocache --depot /ci/depot unpack ci.tar.zst --json

Every blob is verified against its name before it becomes visible; entries are
published only after the whole archive was read and every blob they name is in the
archive or the depot. Refused (exit 1, no entry published, nothing written outside
the depot): `..` or absolute member paths, links, devices, fifos, members outside the
depot layout, blobs whose content does not match their name, entries naming absent
blobs, a corrupt or truncated stream, more than --max-size decompressed, a
stream past 16 MiB that expands more than --max-ratio times, and with --require-signed
an entry without a valid signature by the signing key.")]
pub struct UnpackArgs {
    /// Archive to read, or `-` for stdin
    pub file: PathBuf,
    /// Refuse archives that decompress to more than this (also bounds each blob's content)
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_size_arg)]
    pub max_size: u64,
    /// Refuse archives that expand more than N times (past 16 MiB); 0 turns the check off
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_RATIO)]
    pub max_ratio: u64,
    /// Refuse the archive (exit 1, nothing published) unless every entry is signed with the
    /// signing key (RELOCACHE_SIGNING_KEY, or the variable `[remote] signing_key_env` names)
    #[arg(long)]
    pub require_signed: bool,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn is_stdio(p: &std::path::Path) -> bool {
    p.as_os_str() == "-"
}

// Long on purpose: CLI glue; the argument checks for each way of choosing what is packed, then one summary.
pub fn pack(env: &Env, args: &PackArgs) -> Result<i32> {
    let to_stdout = is_stdio(&args.file);
    if to_stdout && env.cli.json {
        return Err(UsageError(
            "`pack -` writes the archive to stdout, so it cannot also print --json\n  help: pack into a file to get the JSON summary"
                .into(),
        )
        .into());
    }
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(UsageError(
            "refusing to write a binary archive to a terminal\n  help: redirect stdout (`relocache pack - > ci.tar.zst`) or name a file".into(),
        )
        .into());
    }
    // Named targets and --current pack from the plan of current keys.
    let planned_mode = args.current || !args.targets.is_empty();
    let manifest = if planned_mode {
        Some(env.manifest()?)
    } else {
        optional_manifest(env)?
    };
    let paths = env.depot_paths(manifest.as_ref())?;
    let Some(stack) = DepotStack::open_read_only(&paths)? else {
        return Err(UsageError(format!(
            "there is no depot at `{}`, so there is nothing to pack\n  help: build first, or pass --depot DIR",
            paths[0].display()
        ))
        .into());
    };
    let bars = Bars::new(!env.cli.quiet && !env.cli.json);
    let mut unreadable = Vec::new();
    let mut unbuilt = Vec::new();
    let opts = PackOptions {
        level: args.level,
        // Only named targets without --current are all-or-nothing.
        strict: !args.current && !args.targets.is_empty(),
        fsync: args.fsync,
        signing: super::remote::signing_key(manifest.as_ref())?,
    };
    let entries = if !planned_mode {
        // The whole depot: the one that is written, not the read-only rest of a stack.
        let (entries, skipped) = archive::depot_entries(stack.primary())?;
        for s in &skipped {
            relocache::report::Reporter::warning(
                &bars,
                &format!("not packed: entry {}: {}", s.key.short(), s.reason),
            );
        }
        unreadable = skipped;
        entries
    } else {
        let manifest = manifest.as_ref().expect("loaded for targets");
        let planned = plan(manifest, stack.all(), stack.primary().root(), &args.targets)?;
        if args.current {
            let (entries, missing) = archive::current_entries(planned);
            unbuilt = missing;
            entries
        } else {
            strict_entries(planned, &args.targets)?
        }
    };
    let summary = if to_stdout {
        let out = std::io::BufWriter::new(std::io::stdout());
        archive::pack(stack.all(), entries, out, &opts, &bars)
    } else {
        archive::pack_to_path(stack.all(), entries, &args.file, &opts, &bars)
    };
    bars.finish();
    let mut summary = summary.with_context(|| match to_stdout {
        true => "pack to stdout failed".to_owned(),
        false => format!("pack into `{}` failed", args.file.display()),
    })?;
    // Entries that did not even parse were left out too.
    summary.skipped.splice(0..0, unreadable);
    summary.unbuilt = unbuilt;
    if env.cli.json {
        super::print_json(&summary)?;
    } else {
        for u in &summary.unbuilt {
            eprintln!(
                "note: not packed: `{}`: {} (the next build runs it)",
                u.target, u.reason
            );
        }
        eprintln!("{}", pack_line(&summary, &args.file));
    }
    Ok(0)
}

/// The current entries of the named targets and their deps, or an error
/// naming each one without an entry (nothing is written then).
fn strict_entries(planned: Vec<Planned>, targets: &[String]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for p in planned {
        match p.missing() {
            None => entries.extend(p.entry.map(|(_, e)| e)),
            Some(why) => missing.push(format!("{}: {why}", p.name)),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "cannot pack: {}\n  help: run `relocache build {}` first (or pack with --current to leave them out); nothing was written",
            missing.join("; "),
            targets.join(" ")
        );
    }
    Ok(entries)
}

pub(super) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn pack_line(s: &PackSummary, file: &std::path::Path) -> String {
    let dest = if is_stdio(file) {
        "stdout".to_owned()
    } else {
        format!("`{}`", file.display())
    };
    let mut line = format!(
        "packed {} and {} ({}) into {dest}: {}",
        count(s.entries.len() as u64, "entry", "entries"),
        count(s.blobs, "blob", "blobs"),
        format_size(s.blob_bytes),
        format_size(s.archive_bytes)
    );
    if !s.skipped.is_empty() {
        line.push_str(&format!(
            " ({} left out, see the warnings above)",
            s.skipped.len()
        ));
    }
    if !s.unbuilt.is_empty() {
        line.push_str(&format!(
            " ({} without an entry for {} current inputs, see the notes above)",
            count(s.unbuilt.len() as u64, "target", "targets"),
            if s.unbuilt.len() == 1 { "its" } else { "their" }
        ));
    }
    if let Some(source) = &s.signed {
        line.push_str(&format!("; signed with the key from {source}"));
    }
    line
}

pub fn unpack(env: &Env, args: &UnpackArgs) -> Result<i32> {
    let manifest = optional_manifest(env)?;
    let from_stdin = is_stdio(&args.file);
    let file = if from_stdin {
        None
    } else {
        let path = env.cwd.join(&args.file);
        match std::fs::File::open(&path) {
            Ok(_) if path.is_dir() => {
                return Err(UsageError(format!(
                    "`{}` is a directory, not an archive\n  help: name a file made by `relocache pack`, or `-` for stdin",
                    args.file.display()
                ))
                .into())
            }
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UsageError(format!(
                    "archive `{}` does not exist\n  help: name a file made by `relocache pack`, or `-` for stdin",
                    args.file.display()
                ))
                .into())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("could not open `{}`", path.display()))
            }
        }
    };
    let require_signed = match args.require_signed {
        false => None,
        true => Some(super::remote::signing_key(manifest.as_ref())?.ok_or_else(|| {
            UsageError(format!(
                "--require-signed needs the signing key, and {} is not set\n  help: set it to the key the archive was packed with",
                relocache::signing::ENV_KEY
            ))
        })?),
    };
    let stack = env.depots(manifest.as_ref())?;
    let depot = stack.primary();
    let opts = UnpackOptions {
        max_size: args.max_size,
        max_ratio: args.max_ratio,
        archive_len: file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len()),
        require_signed,
    };
    let bars = Bars::new(!env.cli.quiet && !env.cli.json);
    let result = match file {
        Some(f) => archive::unpack(depot, f, &opts, &bars),
        None => archive::unpack(depot, std::io::stdin().lock(), &opts, &bars),
    };
    bars.finish();
    let name = if from_stdin {
        "stdin".to_owned()
    } else {
        format!("`{}`", args.file.display())
    };
    let summary = result
        .with_context(|| format!("unpack of {name} into `{}` failed", depot.root().display()))?;
    if env.cli.json {
        super::print_json(&summary)?;
    } else {
        eprintln!("{}", unpack_line(&summary, &name));
    }
    Ok(0)
}

fn unpack_line(s: &UnpackSummary, name: &str) -> String {
    format!(
        "unpacked {name}: {} added ({} already present), {} added ({} already present), {} written{}",
        count(s.entries_added.len() as u64, "entry", "entries"),
        s.entries_present,
        count(s.blobs_added, "blob", "blobs"),
        s.blobs_present,
        format_size(s.bytes_added),
        if s.pack.is_some() { " into one pack" } else { "" }
    )
}

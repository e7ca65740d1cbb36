//! One target of a build: compute its key, restore a hit from the depot
//! stack or the remote (quarantining damaged entries), or run its command and
//! return the [`StoreJob`] that caches the result. Never a wrong artifact: an
//! entry that fails any check is a miss, never restored. It must never decide
//! the order of targets (the scheduler does) nor write a depot file except
//! through `crate::depot` and `store`.

use std::path::Path;
use std::time::Instant;

use super::ctx::{Computed, Ctx, DepOut, DepOuts};
use super::report::{report, BuildOptions, Outcome, TargetReport, Warning, WarningKind};
use super::{discover, remote, restore, run, store};
use crate::depot::entries::{Entry, InputsSummary, OutputRecord, Reason, ReasonKind};
use crate::depot::DepotError;
use crate::digest::Key;
use crate::file_state::FileState;
use crate::manifest::{Command, Target};
use crate::report::Reporter;

/// Computes `t`'s key, restores a hit or runs the command. A successful run
/// comes back with the [`StoreJob`] that caches it (holding the key's lock).
pub(super) fn process<'a>(
    ctx: &Ctx<'_>,
    t: &'a Target,
    deps: &DepOuts<'_>,
    forced: bool,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
) -> (TargetReport, Option<DepOut>, Option<StoreJob<'a>>) {
    let _span = tracing::debug_span!("target", name = %t.name).entered();
    let started = Instant::now();
    let computed = match tracing::debug_span!("key").in_scope(|| ctx.compute_with(t, deps)) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "no key");
            let mut r = report(&t.name, None, Outcome::Failed, started);
            r.error = Some(e.to_string());
            return (r, None, None);
        }
    };
    let key = computed.key;
    tracing::debug!(%key, forced, "key computed");
    // Neither a restore nor a cleanup writes or deletes through a symlink.
    if let Err(e) = restore::check_no_symlinked_parent(&ctx.manifest.root, &t.name, &t.outputs) {
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(e.to_string());
        return (r, None, None);
    }
    let mut warnings: Vec<Warning> = computed
        .warnings
        .iter()
        .map(|w| Warning::new(WarningKind::Tool, w.to_string()))
        .collect();
    if !forced {
        if let Some(hit) = try_hit(ctx, t, &key, deps, &mut warnings) {
            let (r, out) = finish_hit(ctx, t, hit, warnings, started, opts);
            return (r, out, None);
        }
    }
    let primary = &ctx.depots[0];
    let mut waited = false;
    let lock = if !ctx.writable {
        None
    } else {
        match primary.lock_key(&key, |holder| {
            waited = true;
            reporter.waiting(&t.name, holder);
        }) {
            Ok(l) => Some(l),
            Err(e) => {
                warnings.push(Warning::new(
                    WarningKind::Lock,
                    format!("could not take the build lock ({e}); building without it"),
                ));
                None
            }
        }
    };
    if waited && !forced {
        if let Some(hit) = try_hit(ctx, t, &key, deps, &mut warnings) {
            if let Some(l) = lock {
                l.release();
            }
            let (r, out) = finish_hit(ctx, t, hit, warnings, started, opts);
            return (r, out, None);
        }
    }
    let lock_fd = lock.as_ref().map(|l| l.raw_fd());
    let (mut r, out, mut job) = build_miss(ctx, t, computed, opts, &mut warnings, started, lock_fd);
    match &mut job {
        Some(job) => job.lock = lock,
        None => {
            if let Some(l) = lock {
                l.release();
            }
        }
    }
    r.warnings = warnings;
    (r, out, job)
}

struct Hit {
    entry: Entry,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// The report of a hit (under its entry's key: for a target with a
/// depfile, the key with its discovered inputs).
fn finish_hit(
    ctx: &Ctx<'_>,
    t: &Target,
    hit: Hit,
    mut warnings: Vec<Warning>,
    started: Instant,
    opts: &BuildOptions,
) -> (TargetReport, Option<DepOut>) {
    let key = hit.entry.key;
    // CI's relocatability gate holds for what a warm cache hands out too.
    if opts.require_relocatable && !hit.entry.relocatable {
        let why: Vec<String> = hit
            .entry
            .reasons
            .iter()
            .map(|r| match &r.path {
                Some(p) => format!("{} `{p}`", r.kind),
                None => r.kind.to_string(),
            })
            .collect();
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(format!(
            "`{}` was restored from an entry that is not relocatable ({}) and --require-relocatable is set\n  help: fix the build (see `relocache verify --relocatable`), then `relocache build --force {}`",
            t.name,
            why.join(", "),
            t.name
        ));
        r.warnings = warnings;
        return (r, None);
    }
    // Restored as asked, but never silently: its outputs name the place it
    // was built at (the CLI says it once for the whole build).
    if hit.entry.built_elsewhere(&ctx.root_digest) {
        warnings.push(Warning::new(
            WarningKind::BuiltElsewhere,
            format!(
                "`{}` was restored from an entry built at another location that its outputs embed ({})",
                t.name,
                hit.entry.location_reasons().join(", ")
            ),
        ));
    }
    let out = DepOut::of(&t.outputs, &hit.entry.outputs);
    let mut r = report(&t.name, Some(key), Outcome::Hit, started);
    r.saved_ms = Some(hit.entry.duration_ms);
    r.stdout = hit.stdout;
    r.stderr = hit.stderr;
    r.warnings = warnings;
    (r, Some(out))
}

/// Looks `key` up in every depot of the stack, then on the remote; restores
/// the first usable entry. Damaged entries, corrupt blobs and remote failures
/// are warnings and count as misses. For a target with a depfile, `key` is
/// its base key, looked up through the variants records.
fn try_hit(
    ctx: &Ctx<'_>,
    t: &Target,
    key: &Key,
    deps: &DepOuts<'_>,
    warnings: &mut Vec<Warning>,
) -> Option<Hit> {
    if t.depfile.is_some() {
        return try_hit_discovered(ctx, t, key, deps, warnings);
    }
    for i in 0..ctx.depots.len() {
        if let Some(hit) = hit_in(ctx, t, key, i, warnings) {
            return Some(hit);
        }
    }
    remote::fetch(ctx, t, key, warnings)
        .and_then(|entry| restore_entry(ctx, t, key, 0, entry, warnings))
}

/// A target with a depfile: each depot's variants record of `base` lists the
/// path sets seen; the first set whose files, hashed now, key a sound entry
/// is a hit. A damaged record is a warning and a miss.
fn try_hit_discovered(
    ctx: &Ctx<'_>,
    t: &Target,
    base: &Key,
    deps: &DepOuts<'_>,
    warnings: &mut Vec<Warning>,
) -> Option<Hit> {
    for (i, depot) in ctx.depots.iter().enumerate() {
        let candidates = match discover::candidates(ctx, depot, base, deps) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(depot = i, error = %e, "miss: damaged variants record");
                warnings.push(Warning::new(
                    WarningKind::DamagedEntry,
                    format!("ignoring a damaged variants record: {e}"),
                ));
                continue;
            }
        };
        for (key, _) in &candidates {
            if let Some(hit) = hit_in(ctx, t, key, i, warnings) {
                return Some(hit);
            }
        }
    }
    remote::fetch_discovered(ctx, t, base, deps, warnings)
        .and_then(|entry| restore_entry(ctx, t, &entry.key.clone(), 0, entry, warnings))
}

/// The entry of `key` in depot `i`, restored; damaged entries are
/// quarantined (first depot) and warned about.
fn hit_in(
    ctx: &Ctx<'_>,
    t: &Target,
    key: &Key,
    i: usize,
    warnings: &mut Vec<Warning>,
) -> Option<Hit> {
    let entry = match ctx.depots[i].read_entry(key) {
        Ok(Some(e)) => e,
        Ok(None) => {
            tracing::debug!(depot = i, "miss: no entry");
            return None;
        }
        Err(e) => {
            tracing::debug!(depot = i, error = %e, "miss: damaged entry");
            let moved = quarantine_damaged(ctx, i, key, &e);
            warnings.push(Warning::new(
                WarningKind::DamagedEntry,
                format!("ignoring a damaged entry{moved}: {e}"),
            ));
            return None;
        }
    };
    restore_entry(ctx, t, key, i, entry, warnings)
}

/// Moves a damaged entry of the first depot to its `quarantine/`, so it no
/// longer stands where the rebuild stores a sound one; entries of the other
/// depots of a stack are only read. Returns a note for the warning.
fn quarantine_damaged(ctx: &Ctx<'_>, i: usize, key: &Key, e: &DepotError) -> &'static str {
    if i == 0 && matches!(e, DepotError::Damaged { .. }) {
        ctx.depots[0].quarantine_entry(key);
        " (moved to quarantine/)"
    } else {
        ""
    }
}

/// Restores `entry`, found in depot `i` of the stack, and copies it into
/// the first depot when it came from another.
fn restore_entry(
    ctx: &Ctx<'_>,
    t: &Target,
    key: &Key,
    i: usize,
    entry: Entry,
    warnings: &mut Vec<Warning>,
) -> Option<Hit> {
    let primary = &ctx.depots[0];
    let depot = &ctx.depots[i];
    let logs = entry
        .stdout
        .map(|d| depot.read_blob(&d))
        .transpose()
        .and_then(|o| Ok((o, entry.stderr.map(|d| depot.read_blob(&d)).transpose()?)));
    let (stdout, stderr) = match logs {
        Ok((o, e)) => (o.unwrap_or_default(), e.unwrap_or_default()),
        Err(e) => {
            tracing::debug!(depot = i, error = %e, "miss: a log blob is unreadable");
            warnings.push(Warning::new(
                WarningKind::Restore,
                format!(
                    "cannot restore `{}` from the cache: {e}; rebuilding",
                    t.name
                ),
            ));
            return None;
        }
    };
    let restored = tracing::debug_span!("restore", depot = i).in_scope(|| {
        restore::restore(
            depot,
            &entry,
            &ctx.manifest.root,
            &t.outputs,
            ctx.memo,
            ctx.restore_mode,
        )
    });
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(depot = i, error = %e, "miss: the entry cannot be restored");
            let moved = quarantine_damaged(ctx, i, key, &e);
            warnings.push(Warning::new(
                WarningKind::Restore,
                format!(
                    "cannot restore `{}` from the cache{moved}: {e}; rebuilding",
                    t.name
                ),
            ));
            return None;
        }
    };
    ctx.usage
        .hit(&t.name, key, entry.duration_ms, restored.bytes_written);
    if i > 0 {
        let copied = entry
            .blobs()
            .iter()
            .try_for_each(|b| primary.import_blob(depot, b))
            .and_then(|_| primary.write_entry(&entry))
            .and_then(|_| match entry.base {
                Some(base) => primary.add_variant(&base, entry.discovered_paths()),
                None => Ok(()),
            });
        if let Err(e) = copied {
            warnings.push(Warning::new(
                WarningKind::Restore,
                format!(
                    "could not copy the entry into `{}`: {e}",
                    primary.root().display()
                ),
            ));
        }
    }
    let _ = primary.write_record(&ctx.manifest.name, &t.name, key);
    tracing::debug!(depot = i, "hit");
    Some(Hit {
        entry,
        stdout,
        stderr,
    })
}

/// A miss: runs `t`'s command on a clean slate, collects its outputs, checks
/// that nothing changed under it and, when the depot is writable, returns
/// the [`StoreJob`] that caches them.
fn build_miss<'a>(
    ctx: &Ctx<'_>,
    t: &'a Target,
    computed: Computed,
    opts: &BuildOptions,
    warnings: &mut Vec<Warning>,
    started: Instant,
    lock_fd: Option<std::os::fd::RawFd>,
) -> (TargetReport, Option<DepOut>, Option<StoreJob<'a>>) {
    let root = &ctx.manifest.root;
    let key = computed.key;
    tracing::debug!("running the command");
    let fail = |msg: String, stdout: Vec<u8>, stderr: Vec<u8>| {
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(msg);
        r.stdout = stdout;
        r.stderr = stderr;
        (r, None, None)
    };
    // Checked again: a wait on the build lock may have passed since.
    if let Err(e) = restore::check_no_symlinked_parent(root, &t.name, &t.outputs) {
        return fail(e.to_string(), vec![], vec![]);
    }
    if let Err(msg) = remove_stale_outputs(root, t) {
        return fail(msg, vec![], vec![]);
    }
    let run_start = std::time::SystemTime::now();
    let run = match run::run(&t.command, root, &ctx.pwd, lock_fd) {
        Ok(r) => r,
        Err(e) => {
            let what = match &t.command {
                Command::Shell(_) => "sh".to_owned(),
                Command::Argv(v) => v[0].clone(),
            };
            return fail(format!("could not start `{what}`: {e}"), vec![], vec![]);
        }
    };
    if !run.success {
        return fail(
            format!("command failed ({})", run.status),
            run.stdout,
            run.stderr,
        );
    }
    // Outputs the command wrote through a symlink it made would be restored
    // into real directories: not what a clean build leaves.
    if let Err(e) = restore::check_no_symlinked_parent(root, &t.name, &t.outputs) {
        return fail(
            format!(
                "the command left a symlink on the way to an output, so nothing was stored: {e}"
            ),
            run.stdout,
            run.stderr,
        );
    }
    let records = match store::collect(root, &t.outputs, ctx.memo) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string(), run.stdout, run.stderr),
    };
    let out = DepOut::of(&t.outputs, &records);
    let discovered = match &t.depfile {
        Some(depfile) => match discover::after_run(ctx, t, depfile) {
            Ok(d) => d,
            Err(e) => return fail(e.to_string(), run.stdout, run.stderr),
        },
        None => vec![],
    };
    // The entry's key: with a depfile, the base key with what it read.
    let (key, base) = match &t.depfile {
        Some(_) => {
            let inputs: Vec<_> = discovered.iter().map(|(d, _)| d.clone()).collect();
            (crate::discovered::key_with(&key, &inputs), Some(key))
        }
        None => (key, None),
    };
    let mut r = report(&t.name, Some(key), Outcome::Built, started);
    let duration_ms = run.duration.as_millis() as u64;
    let raced = discover::raced(&discovered, run_start).map(|p| format!("`{p}` (from depfile)"));
    let changed = raced.or_else(|| {
        ctx.inputs
            .first_changed(&computed.inputs)
            .map(|p| format!("`{p}`"))
    });
    if let Some(p) = changed {
        warnings.push(Warning::new(
 WarningKind::InputChanged,
 format!(
            "input {p} changed while `{}` was running; its outputs were not stored (they may mix old and new input)\n  help: run the build again",
            t.name
        )));
        r.stdout = run.stdout;
        r.stderr = run.stderr;
        return (r, Some(out), None);
    }
    let reasons = not_relocatable(ctx, t, &computed, &records, warnings);
    if opts.require_relocatable && !reasons.is_empty() {
        let mut r = fail(
            format!(
                "`{}` is not relocatable and --require-relocatable is set; nothing was stored",
                t.name
            ),
            run.stdout,
            run.stderr,
        );
        r.1 = None;
        return r;
    }
    r.stdout = run.stdout;
    r.stderr = run.stderr;
    if !ctx.writable {
        return (r, Some(out), None);
    }
    let job = StoreJob {
        target: t,
        key,
        base,
        discovered,
        duration_ms,
        outputs: records,
        reasons,
        summary: computed.summary(),
        lock: None,
    };
    (r, Some(out), Some(job))
}

/// Removes `t`'s outputs (and its depfile) before its command runs, so a
/// command that forgets one is caught, never read stale, and makes their
/// parent directories.
fn remove_stale_outputs(root: &Path, t: &Target) -> Result<(), String> {
    // Never deleted through a symlink, like the outputs (checked before).
    if let Some(d) = &t.depfile {
        restore::check_no_symlinked_parent(root, &t.name, std::slice::from_ref(d))
            .map_err(|e| e.to_string())?;
    }
    for o in t.outputs.iter().chain(&t.depfile) {
        let abs = o.to_path(root);
        if let Err(e) = restore::remove_any(&abs) {
            return Err(format!("could not remove the old output: {e}"));
        }
        if let Some(parent) = abs.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    Ok(())
}

/// Why the entry of a freshly built `t` would not be relocatable: outputs
/// embedding a root and inputs tracked by mtime. Warns about each.
fn not_relocatable(
    ctx: &Ctx<'_>,
    t: &Target,
    computed: &Computed,
    records: &[OutputRecord],
    warnings: &mut Vec<Warning>,
) -> Vec<Reason> {
    let root = &ctx.manifest.root;
    let findings = store::relocatability(root, records, &ctx.rooted.needles());
    let mut reasons: Vec<Reason> = findings.iter().map(|f| f.reason.clone()).collect();
    for i in &computed.inputs {
        if let FileState::Untracked { .. } = i.state {
            reasons.push(Reason {
                kind: ReasonKind::UntrackedInput,
                path: Some(i.path.clone()),
                offset: None,
                detail:
                    "tracked by size and mtime (track_content = false), which differ on every copy"
                        .into(),
            });
            warnings.push(Warning::new(
                WarningKind::UntrackedInput,
                format!(
                    "`{}` reads `{}` with track_content = false: its entry is not relocatable",
                    t.name, i.path
                ),
            ));
        }
    }
    for f in &findings {
        warnings.push(Warning::new(
            WarningKind::NotRelocatable,
            format!("`{}` is not relocatable: {}", t.name, f.message),
        ));
    }
    reasons
}

/// Storing a built target's outputs, which the worker hands off so that it
/// can start the next command while the blobs and the entry are written and
/// made durable (the fsyncs are most of a small target's store). The target's
/// outputs are already on disk and its dependents already have their
/// [`DepOut`]; the per-key build lock moves with the job and is released once
/// the entry is published.
pub(crate) struct StoreJob<'a> {
    target: &'a Target,
    /// The entry's key (with a depfile: the key with its discovered inputs).
    key: Key,
    /// With a depfile: the base key, whose lock the job holds and whose
    /// variants record gains this path set.
    base: Option<Key>,
    /// With a depfile: what it listed, as hashed after the command.
    discovered: Vec<discover::Hashed>,
    duration_ms: u64,
    outputs: Vec<OutputRecord>,
    reasons: Vec<Reason>,
    summary: InputsSummary,
    lock: Option<crate::depot::locks::KeyLock>,
}

impl StoreJob<'_> {
    /// Stores the entry; returns whether it was stored and what went wrong.
    pub(super) fn run(self, ctx: &Ctx<'_>, stdout: &[u8], stderr: &[u8]) -> (bool, Vec<Warning>) {
        let t = self.target;
        let _span = tracing::debug_span!("store", target = %t.name, key = %self.key).entered();
        let mut warnings = Vec::new();
        let primary = &ctx.depots[0];
        // A discovered file edited between its hash and now: its entry
        // would name content the command may not have read.
        if let Some(p) = discover::first_changed(ctx, &self.discovered) {
            warnings.push(Warning::new(
                WarningKind::InputChanged,
                format!(
                    "input `{p}` (from depfile) changed while `{}` was being stored; its outputs were not stored\n  help: run the build again",
                    t.name
                ),
            ));
            if let Some(l) = self.lock {
                l.release();
            }
            return (false, warnings);
        }
        let req = store::StoreRequest {
            project: &ctx.manifest.name,
            target: &t.name,
            key: self.key,
            duration_ms: self.duration_ms,
            outputs: self.outputs,
            reasons: self.reasons,
            stdout,
            stderr,
            summary: &self.summary,
            base: self.base,
            discovered: self.discovered.iter().map(|(d, _)| d.clone()).collect(),
            root_digest: ctx.root_digest,
        };
        let stored = match store::store(primary, &ctx.manifest.root, req) {
            Ok(entry) => {
                if let Err(e) = primary.write_record(&ctx.manifest.name, &t.name, &self.key) {
                    warnings.push(Warning::new(
                        WarningKind::Store,
                        format!("could not record the build of `{}`: {e}", t.name),
                    ));
                }
                if let Some(base) = &self.base {
                    if let Err(e) = primary.add_variant(base, entry.discovered_paths()) {
                        warnings.push(Warning::new(
                            WarningKind::Store,
                            format!("could not record the depfile's inputs of `{}`: {e}", t.name),
                        ));
                    }
                }
                remote::upload(ctx, t, &entry, &mut warnings);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "not stored");
                warnings.push(Warning::new(
                    WarningKind::Store,
                    format!(
                    "could not store `{}` in the depot: {e}\n  the build succeeded; its result is not cached",
                    t.name
                )));
                false
            }
        };
        if let Some(l) = self.lock {
            l.release();
        }
        (stored, warnings)
    }
}

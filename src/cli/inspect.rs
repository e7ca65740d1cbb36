//! `status`, `explain`, `graph`, `key`, `path`: read-only views of the cache.
//! None of them runs a command or creates or writes a depot.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use relocache::depot::{Depot, DepotStack};
use relocache::engine::plan::plan;
use relocache::graph::{graph, GraphOptions};
use relocache::inspect::{
    explain, explain_each, status, ChangeKind, Difference, Explanation, Status, TargetStatus,
};
use relocache::manifest::Manifest;

use super::{print_json, Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache status                every target: ready | stale | unstarted | started
  relocache status app --json     {\"targets\":[{\"name\",\"status\",\"key\",\"changed\":[{\"path\",\"change\"}]}]}")]
pub struct StatusArgs {
    /// Targets to show, with their deps (default: all)
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache explain lib                 why lib's key differs from its last build
  relocache explain lib --show-values   include environment variable values")]
pub struct ExplainArgs {
    /// The target to explain
    pub target: String,
    /// Show the old and new values of changed environment variables
    #[arg(long)]
    pub show_values: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
    /// A picture laid out by relocache itself (no graphviz needed)
    Svg,
    /// The SVG in a self-contained HTML page (hover highlights neighbours)
    Html,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache graph > g.dot && dot -Tsvg g.dot > g.svg
  relocache graph --format mermaid
  relocache graph --format svg > graph.svg     a picture, no graphviz needed
  relocache graph --format html > graph.html   the same in a page; hover a stale node for its changed files
  relocache graph --files --for-file src/util.h   the targets that read src/util.h
  relocache graph --format svg --expand > all.svg  every instance of every template
  relocache graph lib                         lib and what it depends on")]
pub struct GraphArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
    /// Add the tracked input files as nodes
    #[arg(long)]
    pub files: bool,
    /// Only targets that read PATH (relative to the project root), directly or through deps
    #[arg(long, value_name = "PATH")]
    pub for_file: Option<String>,
    /// Draw each instance of a template (by default one node per template,
    /// with its instance count and status mix; JSON always lists every
    /// instance, plus `groups`)
    #[arg(long)]
    pub expand: bool,
    /// Only these targets and their deps (a template: all its instances; default: all)
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache key lib               the 64-hex key lib has now
  relocache path lib              the entry file for that key in the depot")]
pub struct TargetArg {
    /// The target
    pub target: String,
}

/// The manifest, the depots that exist (none are created) and the depot root.
fn open(env: &Env) -> Result<(Manifest, Vec<Depot>, PathBuf)> {
    let manifest = env.manifest()?;
    let paths = env.depot_paths(Some(&manifest))?;
    let depots = DepotStack::open_read_only(&paths)?
        .map(|s| s.all().to_vec())
        .unwrap_or_default();
    Ok((manifest, depots, paths[0].clone()))
}

pub fn run_status(env: &Env, args: &StatusArgs) -> Result<i32> {
    let (manifest, depots, root) = open(env)?;
    if let Some(first) = depots.first() {
        super::note_legacy(first);
    }
    let targets = status(&manifest, &depots, &root, &args.targets)?;
    if env.cli.json {
        print_json(&serde_json::json!({ "targets": targets }))?;
        return Ok(0);
    }
    let width = targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
    // `ready (not relocatable)`: ready, but restoring it here leaves
    // outputs naming the location its entry was built at.
    let state = |t: &TargetStatus| match t.status {
        Status::Ready if t.not_relocatable_elsewhere => "ready (not relocatable)",
        s => s.as_str(),
    };
    let sw = targets
        .iter()
        .map(|t| state(t).len())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut out = std::io::stdout().lock();
    for t in &targets {
        let mut detail = String::new();
        if let Some(k) = t.key {
            detail.push_str(&k.short());
        }
        if let Some(d) = &t.blocked_by {
            detail.push_str(&format!("key known once `{d}` is built"));
        }
        if let Some(h) = &t.holder {
            detail.push_str(&format!("  ({h})"));
        }
        if let Some(e) = &t.error {
            detail.push_str(&format!("  {}", e.lines().next().unwrap_or_default()));
        }
        if let Some(r) = &t.record {
            detail.push_str(&format!("  ({r})"));
        }
        writeln!(out, "{:<sw$} {:<width$}  {detail}", state(t), t.name)?;
        for c in &t.changed {
            let word = match c.change {
                ChangeKind::Added => "added",
                ChangeKind::Removed => "removed",
                ChangeKind::Modified => "modified",
            };
            let dir = if c.directory { "directory " } else { "" };
            if c.from_depfile {
                writeln!(
                    out,
                    "{:<sw$} {:<width$}    {} (from depfile) {word}",
                    "", "", c.path
                )?;
            } else {
                writeln!(out, "{:<sw$} {:<width$}    {dir}{word}: {}", "", "", c.path)?;
            }
        }
        if !t.untracked.is_empty() {
            writeln!(
                out,
                "{:<sw$} {:<width$}    untracked inputs: {} (track_content = false: content changes that keep size and mtime are not seen)",
                "",
                "",
                t.untracked.join(", ")
            )?;
        }
        if t.status == Status::Stale && t.changed.is_empty() && t.error.is_none() {
            writeln!(
                out,
                "{:<sw$} {:<width$}    not an input file: `relocache explain {}` says what changed",
                "", "", t.name
            )?;
        }
    }
    let ready = targets.iter().filter(|t| t.status == Status::Ready).count();
    writeln!(out, "{ready} of {} targets ready", targets.len())?;
    Ok(0)
}

pub fn run_explain(env: &Env, args: &ExplainArgs) -> Result<i32> {
    let (manifest, depots, root) = open(env)?;
    if manifest.templates.contains_key(&args.target) {
        // A template: every instance, one after another (a JSON array).
        let all = explain_each(&manifest, &depots, &root, &args.target, args.show_values)?;
        if env.cli.json {
            print_json(&all)?;
        } else {
            let mut s = String::new();
            for ex in &all {
                render_explanation(ex, 0, &mut s);
            }
            print!("{s}");
        }
        return Ok(0);
    }
    let ex = explain(&manifest, &depots, &root, &args.target, args.show_values)?;
    if env.cli.json {
        print_json(&ex)?;
    } else {
        let mut s = String::new();
        render_explanation(&ex, 0, &mut s);
        print!("{s}");
    }
    Ok(0)
}

/// What an added or removed input is called.
fn input_word(directory: bool) -> &'static str {
    if directory {
        "directory"
    } else {
        "input"
    }
}

fn render_explanation(ex: &Explanation, depth: usize, out: &mut String) {
    render_head(ex, depth, out);
    render_reasons(ex, depth, out);
    if depth == 0 && !ex.not_relocatable_elsewhere.is_empty() {
        out.push_str(&format!(
            "`{}` is ready from an entry built at another location, and its outputs name that location ({}): a build here restores them as they are and warns\n  help: build with relative paths (`relocache verify --relocatable` says how), then `relocache build --force {}`\n",
            ex.target,
            ex.not_relocatable_elsewhere.join(", "),
            ex.target
        ));
    }
    if depth == 0 && !ex.untracked.is_empty() {
        out.push_str(&format!(
            "`{}` cannot see content changes of {} (track_content = false): an edit that keeps size and mtime leaves its key unchanged\n",
            ex.target,
            ex.untracked.join(", ")
        ));
    }
}

/// The line saying whose key differs from what, if any.
fn render_head(ex: &Explanation, depth: usize, out: &mut String) {
    let head = match (ex.key, ex.previous_key) {
        (_, _) if ex.same => return,
        (Some(k), Some(p)) => format!(
            "`{}`: key {} differs from the last build's {}{}",
            ex.target,
            k.short(),
            p.short(),
            if ex.ready {
                " (already in the depot)"
            } else {
                ""
            }
        ),
        (None, Some(p)) => format!(
            "`{}`: key unknown until its deps are built; last build's key {}",
            ex.target,
            p.short()
        ),
        _ => return,
    };
    out.push_str(&format!("{}{head}\n", "  ".repeat(depth)));
}

/// Everything but the head line of `ex`. Deps that changed for the same
/// reasons (thirty objects including one edited header) are said once.
fn render_reasons(ex: &Explanation, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    if let Some(n) = &ex.note {
        out.push_str(&format!("{pad}{n}\n"));
    }
    // Deps by the text of their reasons, in order of first appearance.
    let mut deps: Vec<(String, Vec<&Difference>)> = Vec::new();
    for d in &ex.differences {
        let line = match d {
            Difference::InputAdded { path, directory } => {
                format!("{} added: {path}", input_word(*directory))
            }
            Difference::InputRemoved { path, directory } => {
                format!("{} removed: {path}", input_word(*directory))
            }
            Difference::InputChanged { path, old, new } => {
                format!("input changed: {path} ({old} -> {new})")
            }
            Difference::DiscoveredChanged {
                path,
                change,
                old,
                new,
            } => match (change, new) {
                (ChangeKind::Modified, Some(new)) => {
                    format!("input changed: {path} (from depfile) modified ({old} -> {new})")
                }
                _ => format!("input changed: {path} (from depfile) removed"),
            },
            Difference::EnvChanged { name, old, new } => match (old, new) {
                (None, None) => format!("env changed: {name} (values hidden; --show-values)"),
                _ => format!(
                    "env changed: {name} ({} -> {})",
                    old.as_deref().unwrap_or("<unset>"),
                    new.as_deref().unwrap_or("<unset>")
                ),
            },
            Difference::ToolChanged {
                name,
                old,
                new,
                check,
            } => format!(
                "tool changed: {name} ({} -> {}){}",
                old.as_deref().unwrap_or("<none>"),
                new.as_deref().unwrap_or("<none>"),
                check
                    .as_deref()
                    .map(|c| format!("; keyed by its content and the output of `{c}`"))
                    .unwrap_or_default()
            ),
            Difference::VersionChanged { old, new } => format!("version bumped: {old} -> {new}"),
            Difference::CommandChanged { old, new } => format!("command changed: {old} -> {new}"),
            Difference::OutputsChanged { old, new } => {
                format!(
                    "outputs changed: [{}] -> [{}]",
                    old.join(", "),
                    new.join(", ")
                )
            }
            Difference::DepChanged { because, .. } => {
                let mut reasons = String::new();
                render_reasons(because, depth + 1, &mut reasons);
                match deps.iter_mut().find(|(r, _)| *r == reasons) {
                    Some((_, same)) => same.push(d),
                    None => deps.push((reasons, vec![d])),
                }
                continue;
            }
            Difference::Other { detail } => detail.clone(),
        };
        out.push_str(&format!("{pad}{line}\n"));
    }
    for (reasons, same) in deps {
        if let [Difference::DepChanged {
            name,
            old,
            new,
            because,
        }] = same[..]
        {
            out.push_str(&format!(
                "{pad}dep outputs changed: {name} ({} -> {})\n",
                old.as_deref().unwrap_or("<none>"),
                new.as_deref().unwrap_or("not built yet")
            ));
            // Its reasons are rendered already: rendering them again at
            // every level would cost 2^depth on a chain.
            render_head(because, depth + 1, out);
            out.push_str(&reasons);
            continue;
        }
        let names: Vec<&str> = same
            .iter()
            .filter_map(|d| match d {
                Difference::DepChanged { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let shown = if names.len() > 8 {
            format!("{}, … ({} more)", names[..6].join(", "), names.len() - 6)
        } else {
            names.join(", ")
        };
        out.push_str(&format!(
            "{pad}dep outputs changed: {} deps ({shown}), each because:\n{reasons}",
            names.len()
        ));
    }
}

pub fn run_graph(env: &Env, args: &GraphArgs) -> Result<i32> {
    let (manifest, depots, root) = open(env)?;
    let for_file = match &args.for_file {
        Some(f) => Some(project_relative(&manifest, f)?),
        None => None,
    };
    let g = graph(
        &manifest,
        &depots,
        &root,
        &GraphOptions {
            files: args.files,
            for_file: for_file.clone(),
            targets: args.targets.clone(),
        },
    )?;
    if let Some(f) = &for_file {
        if g.nodes.is_empty() {
            eprintln!("note: no target reads `{f}`");
        }
    }
    // JSON is data: every instance, with the templates in `groups`. The
    // pictures draw a template as one node unless asked for each instance.
    let drawn = if args.expand {
        g.clone()
    } else {
        g.collapsed()
    };
    match args.format {
        GraphFormat::Dot => print!("{}", drawn.to_dot()),
        GraphFormat::Mermaid => print!("{}", drawn.to_mermaid()),
        GraphFormat::Json => print_json(&g)?,
        GraphFormat::Svg => std::io::stdout()
            .lock()
            .write_all(drawn.to_svg().as_bytes())?,
        GraphFormat::Html => std::io::stdout()
            .lock()
            .write_all(drawn.to_html(&manifest.name).as_bytes())?,
    }
    Ok(0)
}

/// A path given on the command line, relative to the project root.
fn project_relative(manifest: &Manifest, f: &str) -> Result<String> {
    let p = std::path::Path::new(f);
    let rel = if p.is_absolute() {
        p.strip_prefix(&manifest.root)
            .map_err(|_| {
                UsageError(format!(
                    "`{f}` is not inside the project `{}`",
                    manifest.root.display()
                ))
            })?
            .to_string_lossy()
            .into_owned()
    } else {
        f.to_owned()
    };
    Ok(relocache::relpath::RelPath::normalize(&rel)
        .map_err(|e| UsageError(format!("--for-file: {e}")))?
        .to_string())
}

/// A target's name, its current key, and the depot holding its entry.
type CurrentKey = (String, relocache::digest::Key, Option<usize>);

/// The current key of each target `target` names (itself, or a template's
/// instances), or an error saying which dep must be built.
fn current(env: &Env, target: &str) -> Result<(Vec<CurrentKey>, Vec<Depot>, PathBuf)> {
    let (manifest, depots, root) = open(env)?;
    let planned = plan(&manifest, &depots, &root, &[target.to_owned()])?;
    let names = manifest.select(&[target.to_owned()]).unwrap_or_default();
    let mut keys = Vec::with_capacity(names.len());
    for name in &names {
        let Some(p) = planned.iter().find(|p| p.name == *name) else {
            continue;
        };
        if let Some(e) = &p.error {
            anyhow::bail!("cannot compute the key of `{name}`: {e}");
        }
        match p.key {
            Some(k) => keys.push((name.clone(), k, p.entry.as_ref().map(|(i, _)| *i))),
            None => anyhow::bail!(
                "the key of `{name}` depends on the outputs of `{}`, which has no entry for its current key\n  help: run `relocache build {}` first",
                p.blocked_by.clone().unwrap_or_default(),
                p.blocked_by.clone().unwrap_or_default()
            ),
        }
    }
    Ok((keys, depots, root))
}

pub fn run_key(env: &Env, args: &TargetArg) -> Result<i32> {
    let (keys, ..) = current(env, &args.target)?;
    let one = keys.len() == 1 && keys[0].0 == args.target;
    if env.cli.json {
        let list: Vec<_> = keys
            .iter()
            .map(|(name, key, _)| serde_json::json!({ "target": name, "key": key }))
            .collect();
        if one {
            print_json(&list[0])?;
        } else {
            print_json(&list)?;
        }
    } else if one {
        println!("{}", keys[0].1);
    } else {
        // A template: one line per instance, the key first (`cut -d' ' -f1`).
        for (name, key, _) in &keys {
            println!("{key} {name}");
        }
    }
    Ok(0)
}

pub fn run_path(env: &Env, args: &TargetArg) -> Result<i32> {
    let (keys, depots, root) = current(env, &args.target)?;
    let one = keys.len() == 1 && keys[0].0 == args.target;
    let mut list = Vec::with_capacity(keys.len());
    let mut absent = Vec::new();
    for (name, key, found) in &keys {
        let path = match found {
            Some(i) => depots[*i].entry_path(key),
            None => root.join(relocache::depot::layout::entry(key)),
        };
        if found.is_none() {
            absent.push(name.as_str());
        }
        list.push((name, key, path, found.is_some()));
    }
    if env.cli.json {
        let json: Vec<_> = list
            .iter()
            .map(|(name, key, path, exists)| {
                serde_json::json!({ "target": name, "key": key, "path": path, "exists": exists })
            })
            .collect();
        if one {
            print_json(&json[0])?;
        } else {
            print_json(&json)?;
        }
    } else {
        for (name, _, path, _) in &list {
            if one {
                println!("{}", path.display());
            } else {
                println!("{} {name}", path.display());
            }
        }
        if !absent.is_empty() {
            eprintln!(
                "note: no entry there yet for {}; `relocache build {}` would store it",
                absent.join(", "),
                args.target
            );
        }
    }
    Ok(0)
}

//! From the tables to the targets: a plain table is one target; a template
//! (`foreach`) is one instance per matching file of the project. Every
//! string is filled in (see `template`), template names in `deps` become
//! their instances, and each resulting table is validated by `validate` as
//! if it had been written out by hand — so an instance obeys every rule a
//! hand-written target does, with errors at the template's line and column.

use std::collections::{BTreeMap, BTreeSet};

use globset::GlobBuilder;
use toml::Spanned;

use super::raw::{RawDefaults, RawTarget};
use super::template::{self, FillError, Matched, NoOutputs, OutputsOf, Quote};
use super::validate::{valid_name, Cx};
use super::{ManifestError, Pattern, Target, Template, MANIFEST_NAME};
use crate::relpath::RelPath;

/// The files a template's `foreach` may match: the project's walk.
pub(super) struct ProjectFiles {
    /// Files and symlinks, relative to the root, `.gitignore` honoured.
    pub(super) files: Vec<RelPath>,
    /// Paths that cannot be written in a manifest, for messages.
    pub(super) unusable: Vec<String>,
}

/// The targets of a manifest, templates expanded.
pub(super) struct Expanded {
    pub(super) targets: BTreeMap<String, Target>,
    /// Each target's table, filled in: what errors across targets point at.
    pub(super) tables: BTreeMap<String, Spanned<RawTarget>>,
    pub(super) templates: BTreeMap<String, Template>,
}

/// One target to make: its name, its table, and the file of an instance.
struct Planned<'r> {
    name: String,
    table: &'r str,
    raw: &'r Spanned<RawTarget>,
    matched: Option<(RelPath, Matched)>,
}

/// Expands and validates every table. `files` lists the project, called
/// only when a template needs it.
pub(super) fn expand(
    cx: &Cx<'_>,
    raw_targets: &BTreeMap<String, Spanned<RawTarget>>,
    defaults: &RawDefaults,
    files: &mut dyn FnMut() -> Result<ProjectFiles, String>,
) -> Result<Expanded, ManifestError> {
    let mut listed: Option<ProjectFiles> = None;
    let mut planned = Vec::new();
    let mut templates = BTreeMap::new();
    for (tname, spanned) in raw_targets {
        if !valid_name(tname) {
            return Err(cx.err(
                spanned.span(),
                format!("invalid target name `{tname}`"),
                "use letters, digits, `.`, `_` and `-` only",
            ));
        }
        let Some(fe) = &spanned.get_ref().foreach else {
            planned.push(Planned {
                name: tname.clone(),
                table: tname,
                raw: spanned,
                matched: None,
            });
            continue;
        };
        if listed.is_none() {
            let got = files().map_err(|e| {
                cx.err(
                    fe.span(),
                    format!("could not list the project's files for `foreach`: {e}"),
                    "check the permissions of that directory",
                )
            })?;
            listed = Some(got);
        }
        let project = listed.as_ref().expect("listed above");
        let matches = match_foreach(cx, tname, fe, project)?;
        let mut instances = Vec::with_capacity(matches.len());
        for path in matches {
            let name = format!("{tname}:{path}");
            instances.push(name.clone());
            let m = Matched::new(&path);
            planned.push(Planned {
                name,
                table: tname,
                raw: spanned,
                matched: Some((path, m)),
            });
        }
        templates.insert(
            tname.clone(),
            Template {
                instances,
                loc: cx.loc(spanned.span()),
            },
        );
    }
    drop_generated(&mut planned, &mut templates, cx, raw_targets)?;

    // Every target's outputs, for `{outputs:NAME}`.
    let mut outputs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &planned {
        let m = p.matched.as_ref().map(|(_, m)| m);
        let mut outs = Vec::new();
        for o in p.raw.get_ref().outputs.iter().flatten() {
            let filled = fill_or_err(
                cx,
                &p.name,
                o.span(),
                o.get_ref(),
                m,
                &NoOutputs,
                Quote::None,
            )?;
            // Invalid paths are reported by `validate`, with their position.
            if let Ok(r) = RelPath::normalize(&filled) {
                outs.push(r.to_string());
            }
        }
        outputs.insert(p.name.clone(), outs);
    }

    let mut targets = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for p in &planned {
        let m = p.matched.as_ref().map(|(_, m)| m);
        let table = fill_table(cx, p, m, &templates, &outputs)?;
        let mut t = cx.target(&p.name, &table, defaults)?;
        if let Some((path, _)) = &p.matched {
            t.template = Some(p.table.to_owned());
            if !t
                .inputs
                .iter()
                .any(|i| matches!(&i.pattern, Pattern::Literal(l) if l == path))
            {
                t.inputs.push(super::InputPattern {
                    text: path.to_string(),
                    pattern: Pattern::Literal(path.clone()),
                    loc: cx.loc(p.raw.get_ref().foreach.as_ref().map_or(0..0, |f| f.span())),
                });
            }
            t.source = Some(path.clone());
        }
        targets.insert(p.name.clone(), t);
        tables.insert(p.name.clone(), table);
    }
    Ok(Expanded {
        targets,
        tables,
        templates,
    })
}

/// The files `foreach` matches, sorted. Globs as in `inputs`; a literal
/// path must exist. Matching nothing at all is an error.
fn match_foreach(
    cx: &Cx<'_>,
    tname: &str,
    fe: &Spanned<toml::Value>,
    project: &ProjectFiles,
) -> Result<Vec<RelPath>, ManifestError> {
    let help = "write `foreach = \"src/**/*.c\"` or a list of globs and paths";
    let texts: Vec<&str> = match fe.get_ref() {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(a) if !a.is_empty() => {
            let mut v = Vec::new();
            for x in a {
                match x {
                    toml::Value::String(s) => v.push(s.as_str()),
                    _ => {
                        return Err(cx.err(
                            fe.span(),
                            format!(
                            "`foreach` of template `{tname}` holds a value that is not a string"
                        ),
                            help,
                        ))
                    }
                }
            }
            v
        }
        _ => {
            return Err(cx.err(
                fe.span(),
                format!(
                    "`foreach` of template `{tname}` must be a glob or a non-empty list of globs"
                ),
                help,
            ))
        }
    };
    let mut found: BTreeSet<RelPath> = BTreeSet::new();
    for text in texts {
        if text.starts_with('/') || text.split('/').any(|c| c == "..") {
            return Err(cx.err(
                fe.span(),
                format!("`foreach` pattern `{text}` leaves the project"),
                "write patterns relative to the project root, inside it",
            ));
        }
        if !text.contains(['*', '?', '[', '{']) {
            let p = RelPath::normalize(text)
                .map_err(|e| cx.err(fe.span(), format!("`foreach` path `{text}`: {e}"), help))?;
            if project.files.binary_search(&p).is_err() {
                return Err(cx.err(
                    fe.span(),
                    format!("`foreach` of template `{tname}` names `{p}`, which is not a file of the project"),
                    "fix the path, or remove it from the list (a `.gitignore`d file is never matched)",
                ));
            }
            found.insert(p);
            continue;
        }
        let cleaned: Vec<&str> = text
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let glob = GlobBuilder::new(&cleaned.join("/"))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                cx.err(
                    fe.span(),
                    format!("invalid glob `{text}` in `foreach`: {}", e.kind()),
                    "`*` and `?` match within one directory, `**` across directories, `{a,b}` alternatives",
                )
            })?
            .compile_matcher();
        if let Some(bad) = project.unusable.iter().find(|u| glob.is_match(u.as_str())) {
            return Err(cx.err(
                fe.span(),
                format!("`foreach` of template `{tname}` matches `{bad}`, whose name cannot be written in a manifest (not UTF-8, or holding `\\`)"),
                "rename the file, or narrow the pattern",
            ));
        }
        found.extend(
            project
                .files
                .iter()
                .filter(|f| glob.is_match(f.as_str()))
                .cloned(),
        );
    }
    // A depot inside the project is never a source.
    let depots: Vec<String> = project
        .files
        .iter()
        .filter_map(|f| f.as_str().strip_suffix("/DEPOT.toml"))
        .filter(|d| {
            project
                .files
                .binary_search(&RelPath::trusted(format!("{d}/CACHEDIR.TAG")))
                .is_ok()
        })
        .map(|d| format!("{d}/"))
        .collect();
    found.retain(|f| {
        f.as_str() != MANIFEST_NAME && !depots.iter().any(|d| f.as_str().starts_with(d.as_str()))
    });
    if found.is_empty() {
        return Err(cx.err(
            fe.span(),
            format!("`foreach` of template `{tname}` matches no file"),
            "check the pattern against the project's files (`.gitignore`d files are never matched)",
        ));
    }
    Ok(found.into_iter().collect())
}

/// Leaves out instances whose file lies at or below a declared output (a
/// generated file is a product, not a source: matching it would make the
/// set of targets depend on what was built last).
fn drop_generated(
    planned: &mut Vec<Planned<'_>>,
    templates: &mut BTreeMap<String, Template>,
    cx: &Cx<'_>,
    raw_targets: &BTreeMap<String, Spanned<RawTarget>>,
) -> Result<(), ManifestError> {
    if templates.is_empty() {
        return Ok(());
    }
    let mut outs: Vec<String> = Vec::new();
    for p in planned.iter() {
        let m = p.matched.as_ref().map(|(_, m)| m);
        for o in p.raw.get_ref().outputs.iter().flatten() {
            if let Ok(f) = template::fill(o.get_ref(), m, &NoOutputs, Quote::None) {
                if let Ok(r) = RelPath::normalize(&f) {
                    outs.push(r.to_string());
                }
            }
        }
    }
    outs.sort_unstable();
    outs.dedup();
    let generated = |path: &RelPath| {
        crate::relpath::self_and_ancestors_of(path.as_str())
            .any(|a| outs.binary_search_by(|o| o.as_str().cmp(a)).is_ok())
    };
    let mut dropped: BTreeSet<String> = BTreeSet::new();
    planned.retain(|p| match &p.matched {
        Some((path, _)) if generated(path) => {
            dropped.insert(p.name.clone());
            false
        }
        _ => true,
    });
    for (tname, t) in templates.iter_mut() {
        t.instances.retain(|i| !dropped.contains(i));
        if t.instances.is_empty() {
            let fe = raw_targets[tname]
                .get_ref()
                .foreach
                .as_ref()
                .map_or(0..0, |f| f.span());
            return Err(cx.err(
                fe,
                format!("`foreach` of template `{tname}` matches only outputs of targets"),
                "match source files; generated files are never instances",
            ));
        }
    }
    Ok(())
}

/// What `{outputs:NAME}` means in one target: NAME among its deps as
/// written, a target or a template.
struct DepOutputs<'a> {
    deps: BTreeSet<String>,
    templates: &'a BTreeMap<String, Template>,
    outputs: &'a BTreeMap<String, Vec<String>>,
}

impl OutputsOf for DepOutputs<'_> {
    fn outputs(&self, name: &str) -> Result<Vec<String>, FillError> {
        let known = self.templates.contains_key(name) || self.outputs.contains_key(name);
        if !known {
            return Err(FillError::OutputsUnknown(name.to_owned()));
        }
        if !self.deps.contains(name) {
            return Err(FillError::OutputsNotADep(name.to_owned()));
        }
        let mut v: Vec<String> = match self.templates.get(name) {
            Some(t) => t
                .instances
                .iter()
                .flat_map(|i| self.outputs[i].iter().cloned())
                .collect(),
            None => self.outputs[name].clone(),
        };
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
}

fn fill_or_err(
    cx: &Cx<'_>,
    target: &str,
    span: std::ops::Range<usize>,
    s: &str,
    m: Option<&Matched>,
    outputs: &dyn OutputsOf,
    quote: Quote,
) -> Result<String, ManifestError> {
    template::fill(s, m, outputs, quote).map_err(|e| {
        let (message, help) = e.describe(target);
        cx.err(span, message, &help)
    })
}

fn filled(
    cx: &Cx<'_>,
    target: &str,
    s: &Spanned<String>,
    m: Option<&Matched>,
) -> Result<Spanned<String>, ManifestError> {
    let v = fill_or_err(
        cx,
        target,
        s.span(),
        s.get_ref(),
        m,
        &NoOutputs,
        Quote::None,
    )?;
    Ok(Spanned::new(s.span(), v))
}

fn filled_list(
    cx: &Cx<'_>,
    target: &str,
    list: &Option<Vec<Spanned<String>>>,
    m: Option<&Matched>,
) -> Result<Option<Vec<Spanned<String>>>, ManifestError> {
    list.as_ref()
        .map(|l| l.iter().map(|s| filled(cx, target, s, m)).collect())
        .transpose()
}

/// One table with every placeholder filled in and template names in
/// `deps` replaced by their instances.
fn fill_table(
    cx: &Cx<'_>,
    p: &Planned<'_>,
    m: Option<&Matched>,
    templates: &BTreeMap<String, Template>,
    outputs: &BTreeMap<String, Vec<String>>,
) -> Result<Spanned<RawTarget>, ManifestError> {
    let raw = p.raw.get_ref();
    let name = p.table;
    let mut t = raw.clone();
    t.foreach = None;
    t.outputs = filled_list(cx, name, &raw.outputs, m)?;
    t.inputs = filled_list(cx, name, &raw.inputs, m)?;
    t.depfile = raw
        .depfile
        .as_ref()
        .map(|d| filled(cx, name, d, m))
        .transpose()?;
    if let Some(list) = &raw.include_dependency {
        let mut v = Vec::with_capacity(list.len());
        for item in list {
            let mut value = item.get_ref().clone();
            let text = match &mut value {
                toml::Value::String(s) => Some(s),
                toml::Value::Table(tab) => match tab.get_mut("path") {
                    Some(toml::Value::String(s)) => Some(s),
                    _ => None,
                },
                _ => None,
            };
            if let Some(s) = text {
                *s = fill_or_err(cx, name, item.span(), s, m, &NoOutputs, Quote::None)?;
            }
            v.push(Spanned::new(item.span(), value));
        }
        t.include_dependency = Some(v);
    }
    let mut written_deps = BTreeSet::new();
    if let Some(list) = &raw.deps {
        let mut v = Vec::with_capacity(list.len());
        for d in list {
            let d = filled(cx, name, d, m)?;
            written_deps.insert(d.get_ref().clone());
            match templates.get(d.get_ref()) {
                Some(tpl) => v.extend(
                    tpl.instances
                        .iter()
                        .map(|i| Spanned::new(d.span(), i.clone())),
                ),
                None => v.push(d),
            }
        }
        t.deps = Some(v);
    }
    let deps_out = DepOutputs {
        deps: written_deps,
        templates,
        outputs,
    };
    if let Some(r) = &raw.run {
        let v = fill_or_err(cx, name, r.span(), r.get_ref(), m, &deps_out, Quote::Shell)?;
        t.run = Some(Spanned::new(r.span(), v));
    }
    if let Some(c) = &raw.command {
        let mut argv = Vec::with_capacity(c.get_ref().len());
        for el in c.get_ref() {
            let more = template::fill_argv(el, m, &deps_out).map_err(|e| {
                let (message, help) = e.describe(name);
                cx.err(c.span(), message, &help)
            })?;
            argv.extend(more);
        }
        t.command = Some(Spanned::new(c.span(), argv));
    }
    Ok(Spanned::new(p.raw.span(), t))
}

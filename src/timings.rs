//! Pictures of one build, made from its [`BuildReport`]: the `--timings` HTML
//! page (a Gantt chart of every target on its `-j` lane, the critical path,
//! totals and a table sortable by duration) and the `--profile` Chrome
//! trace-event JSON (Perfetto, `chrome://tracing`). Both are pure functions
//! of the report; this module never writes files and never prints.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::{BuildReport, Outcome, TargetReport};
use crate::manifest::Manifest;
use crate::page::{self, escape};

/// The longest chain of targets through their deps, by duration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CriticalPath {
    /// Target names, each a dep of the next.
    pub targets: Vec<String>,
    /// Sum of their durations in this build.
    pub duration_ms: u64,
}

/// Computes the critical path of `report`: the dependency chain whose
/// durations add up to the most. No shorter wall time was possible with
/// these durations, however many `-j` lanes.
pub fn critical_path(report: &BuildReport, manifest: &Manifest) -> CriticalPath {
    let index: HashMap<&str, usize> = report
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let deps_of = |t: &TargetReport| -> Vec<usize> {
        manifest
            .targets
            .get(&t.name)
            .map(|m| {
                m.deps
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Targets are in dependency order, so one pass suffices; `via` is the
    // dep the longest chain ending at each target comes through.
    let mut finish = vec![0u64; report.targets.len()];
    let mut via: Vec<Option<usize>> = vec![None; report.targets.len()];
    for (i, t) in report.targets.iter().enumerate() {
        let best = deps_of(t)
            .into_iter()
            .filter(|&d| d < i)
            .max_by_key(|&d| (finish[d], std::cmp::Reverse(d)));
        finish[i] = t.duration_ms + best.map_or(0, |d| finish[d]);
        via[i] = best;
    }
    let Some(mut end) = (0..finish.len()).max_by_key(|&i| (finish[i], std::cmp::Reverse(i))) else {
        return CriticalPath::default();
    };
    let duration_ms = finish[end];
    let mut targets = vec![report.targets[end].name.clone()];
    while let Some(d) = via[end] {
        targets.push(report.targets[d].name.clone());
        end = d;
    }
    targets.reverse();
    CriticalPath {
        targets,
        duration_ms,
    }
}

/// The totals shown at the top of the timings page.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Targets in the build.
    pub targets: usize,
    /// Restored from the depot.
    pub hits: usize,
    /// Commands run successfully.
    pub built: usize,
    /// Failed targets.
    pub failed: usize,
    /// Targets not attempted because a dep failed.
    pub skipped: usize,
    /// Wall time of the build.
    pub wall_ms: u64,
    /// Sum of every target's duration (the work the lanes did).
    pub spent_ms: u64,
    /// Sum of the stored build durations of the hits: the time the cache saved.
    pub saved_ms: u64,
    /// Number of `-j` lanes that ran a target.
    pub lanes: usize,
}

impl Totals {
    /// The totals of `report`.
    pub fn of(report: &BuildReport) -> Totals {
        Totals {
            targets: report.targets.len(),
            hits: report.hits,
            built: report.built,
            failed: report.failed,
            skipped: report.skipped,
            wall_ms: report.duration_ms,
            spent_ms: report.targets.iter().map(|t| t.duration_ms).sum(),
            saved_ms: report
                .targets
                .iter()
                .filter_map(|t| t.saved_ms)
                .fold(0, u64::saturating_add),
            lanes: report
                .targets
                .iter()
                .map(|t| t.worker + 1)
                .max()
                .unwrap_or(0),
        }
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Hit => "hit",
        Outcome::Built => "built",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}

/// Fill colour of an outcome on the timeline.
pub fn outcome_color(o: Outcome) -> &'static str {
    match o {
        Outcome::Hit => "#8fd694",
        Outcome::Built => "#5dade2",
        Outcome::Failed => "#ec7063",
        Outcome::Skipped => "#d5d8dc",
    }
}

/// Chrome trace-event JSON of `report`: one complete (`"ph": "X"`) event per
/// target on the thread of its lane, times in microseconds, with the outcome
/// and key prefix in `args`; plus metadata events naming the process and the
/// lanes. Load it in <https://ui.perfetto.dev> or `chrome://tracing`.
pub fn trace(report: &BuildReport, project: &str) -> serde_json::Value {
    let mut events = vec![serde_json::json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": format!("relocache build: {project}") }
    })];
    let lanes: BTreeSet<usize> = report.targets.iter().map(|t| t.worker).collect();
    for lane in lanes {
        events.push(serde_json::json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": lane,
            "args": { "name": format!("lane {lane}") }
        }));
    }
    for t in &report.targets {
        let mut args = serde_json::json!({ "outcome": outcome_word(t.outcome) });
        if let Some(k) = t.key {
            args["key"] = k.short().into();
        }
        if let Some(s) = t.saved_ms {
            args["saved_ms"] = s.into();
        }
        if let Some(e) = &t.error {
            args["error"] = e.lines().next().unwrap_or_default().into();
        }
        events.push(serde_json::json!({
            "name": t.name,
            "cat": outcome_word(t.outcome),
            "ph": "X",
            "ts": t.start_ms * 1000,
            "dur": t.duration_ms * 1000,
            "pid": 1,
            "tid": t.worker,
            "args": args,
        }));
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// What the timings page says about where the build ran.
#[derive(Debug, Clone)]
pub struct PageInfo {
    /// The project name.
    pub project: String,
    /// When the build ran, as the caller wants it shown (e.g. RFC 3339).
    pub generated: String,
}

/// `12ms`, `1.25s`, `2m05s`.
pub fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A round tick step giving at most about `max_ticks` ticks over `span` ms.
fn tick_step(span: u64, max_ticks: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if span / (step * m) <= max_ticks {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// Approximate width of `text` in the monospace font used on the pages.
fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().count() as f64 * font_px * 0.62
}

const CSS: &str = r#"
.cards { display: flex; flex-wrap: wrap; gap: .6em; margin: 0 0 1.2em; }
.card { border: 1px solid #d5d8dc; border-radius: 6px; padding: .4em .8em; min-width: 6em; }
.card b { display: block; font-size: 1.3em; }
.card span { color: #566573; font-size: .85em; }
.legend { display: flex; gap: 1.2em; margin: .4em 0; font-size: .9em; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: -.15em; margin-right: .3em; border: 1px solid #7f8c8d; border-radius: 2px; }
.swatch.critical { border: 2.5px solid #6c3483; }
#gantt { width: 100%; height: auto; border: 1px solid #e5e8e8; border-radius: 6px; }
.bar rect { stroke: #566573; stroke-width: .5; }
.bar.critical rect { stroke: #6c3483; stroke-width: 2.5; }
.bar:hover rect, .bar.hl rect { opacity: .7; }
.bar text { font-size: 12px; fill: #1c2833; pointer-events: none; }
.axis text { font-size: 11px; fill: #566573; }
.axis line { stroke: #e5e8e8; }
.lane-label { font-size: 12px; fill: #566573; }
table { border-collapse: collapse; margin-top: 1.2em; min-width: 60%; }
th, td { padding: .25em .8em; border-bottom: 1px solid #e5e8e8; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; user-select: none; background: #f4f6f6; }
th[aria-sort=descending]::after { content: " \25BC"; }
th[aria-sort=ascending]::after { content: " \25B2"; }
tr:hover td, tr.hl td { background: #fef9e7; }
td .dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%; margin-right: .4em; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .9em; }
"#;

/// Sorts the table when a header is clicked; hovering a row highlights its
/// bar and the other way round.
const SCRIPT: &str = r#"(function () {
  var table = document.getElementById("targets");
  var heads = table.tHead.rows[0].cells;
  var body = table.tBodies[0];
  function value(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    return numeric ? Number(v) : v.toLowerCase();
  }
  function sortBy(col, dir) {
    var numeric = heads[col].className.indexOf("num") >= 0;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col, numeric), y = value(b, col, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", dir < 0 ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var numeric = th.className.indexOf("num") >= 0;
      var cur = th.getAttribute("aria-sort");
      var dir = cur ? (cur === "descending" ? 1 : -1) : (numeric ? -1 : 1);
      sortBy(col, dir);
    });
  });
  function link(name, on) {
    document.querySelectorAll('[data-target="' + name + '"]').forEach(function (el) {
      el.classList.toggle("hl", on);
    });
  }
  document.querySelectorAll("[data-target]").forEach(function (el) {
    var name = el.getAttribute("data-target");
    el.addEventListener("mouseenter", function () { link(name, true); });
    el.addEventListener("mouseleave", function () { link(name, false); });
  });
  sortBy(2, -1);
  ok();
})();"#;

/// The `--timings` page for `report`: one self-contained HTML file (inline
/// CSS, SVG and script; nothing fetched), well-formed XML as well as HTML.
/// Every target has a bar (`<g data-target="NAME">`) and a table row
/// (`<tr data-target="NAME">`).
pub fn html(report: &BuildReport, manifest: &Manifest, info: &PageInfo) -> String {
    let totals = Totals::of(report);
    let critical = critical_path(report, manifest);
    let on_critical: BTreeSet<&str> = if critical.duration_ms > 0 {
        critical.targets.iter().map(String::as_str).collect()
    } else {
        BTreeSet::new()
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>relocache build: {}</h1>\n<p class=\"sub\">{} · {} target{} on {} lane{} in {}</p>\n",
        escape(&info.project),
        escape(&info.generated),
        totals.targets,
        if totals.targets == 1 { "" } else { "s" },
        totals.lanes,
        if totals.lanes == 1 { "" } else { "s" },
        format_ms(totals.wall_ms),
    );
    body.push_str("<div class=\"cards\" id=\"totals\">\n");
    let cards: [(&str, String, &str); 9] = [
        ("hits", totals.hits.to_string(), "hits"),
        ("built", totals.built.to_string(), "built"),
        ("failed", totals.failed.to_string(), "failed"),
        ("skipped", totals.skipped.to_string(), "skipped"),
        ("wall", format_ms(totals.wall_ms), "wall time"),
        (
            "spent",
            format_ms(totals.spent_ms),
            "time spent (all lanes)",
        ),
        ("saved", format_ms(totals.saved_ms), "time saved by hits"),
        ("critical", format_ms(critical.duration_ms), "critical path"),
        ("lanes", totals.lanes.to_string(), "lanes (-j)"),
    ];
    for (id, value, label) in cards {
        let _ = writeln!(
            body,
            "<div class=\"card\" id=\"total-{id}\"><b>{}</b><span>{}</span></div>",
            escape(&value),
            escape(label)
        );
    }
    body.push_str("</div>\n");
    if !critical.targets.is_empty() && critical.duration_ms > 0 {
        let _ = writeln!(
            body,
            "<p id=\"critical-path\">Critical path ({}): <code>{}</code></p>",
            format_ms(critical.duration_ms),
            escape(&critical.targets.join(" → "))
        );
    }
    body.push_str("<div class=\"legend\">");
    for o in [
        Outcome::Hit,
        Outcome::Built,
        Outcome::Failed,
        Outcome::Skipped,
    ] {
        let _ = write!(
            body,
            "<span><i class=\"swatch\" style=\"background:{}\"></i>{}</span>",
            outcome_color(o),
            outcome_word(o)
        );
    }
    body.push_str("<span><i class=\"swatch critical\"></i>critical path</span></div>\n");
    body.push_str(&gantt(report, &on_critical));
    body.push_str(&template_table(report));
    body.push_str(&table(report, &on_critical));
    page::html(
        &format!("relocache timings: {}", info.project),
        CSS,
        &body,
        SCRIPT,
    )
}

/// The time a template's instances took in one build (instances are named
/// `TEMPLATE:PATH`, see [`crate::graph::group::template_of`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateTimes {
    /// The template's name.
    pub name: String,
    /// Its instances in the build.
    pub instances: usize,
    /// Instances per outcome: hit, built, failed, skipped.
    pub hits: usize,
    /// Built instances.
    pub built: usize,
    /// Failed instances.
    pub failed: usize,
    /// Skipped instances.
    pub skipped: usize,
    /// Sum of the instances' durations.
    pub spent_ms: u64,
    /// When the first instance started.
    pub first_start_ms: u64,
    /// When the last instance ended.
    pub last_end_ms: u64,
}

impl TemplateTimes {
    /// `obj ×200: 180 hit, 20 built; 12.30s spent from 0ms to 5.20s`.
    fn summary(&self) -> String {
        let mix: Vec<String> = [
            (self.hits, "hit"),
            (self.built, "built"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect();
        format!(
            "{} ×{}: {}; {} spent from {} to {}",
            self.name,
            self.instances,
            mix.join(", "),
            format_ms(self.spent_ms),
            format_ms(self.first_start_ms),
            format_ms(self.last_end_ms)
        )
    }
}

/// The templates among the targets of `report`, sorted by name.
pub fn template_times(report: &BuildReport) -> Vec<TemplateTimes> {
    let mut by_name: std::collections::BTreeMap<&str, TemplateTimes> = Default::default();
    for t in &report.targets {
        let Some(name) = crate::graph::group::template_of(&t.name) else {
            continue;
        };
        let g = by_name.entry(name).or_insert_with(|| TemplateTimes {
            name: name.to_owned(),
            first_start_ms: u64::MAX,
            ..Default::default()
        });
        g.instances += 1;
        match t.outcome {
            Outcome::Hit => g.hits += 1,
            Outcome::Built => g.built += 1,
            Outcome::Failed => g.failed += 1,
            Outcome::Skipped => g.skipped += 1,
        }
        g.spent_ms += t.duration_ms;
        g.first_start_ms = g.first_start_ms.min(t.start_ms);
        g.last_end_ms = g.last_end_ms.max(t.start_ms + t.duration_ms);
    }
    by_name.into_values().collect()
}

/// `text` cut to at most `room` pixels at `font_px`, ending in `…` when cut;
/// `None` when not even two characters and the ellipsis fit.
fn elide(text: &str, room: f64, font_px: f64) -> Option<String> {
    if text_width(text, font_px) <= room {
        return Some(text.to_owned());
    }
    let fit = (room / (font_px * 0.62)).floor() as usize;
    if fit < 3 {
        return None;
    }
    let mut cut: String = text.chars().take(fit - 1).collect();
    cut.push('…');
    Some(cut)
}

/// Where the label of a bar goes: inside it, after it, or cut to fit one of
/// those (the bar's `<title>` keeps the full name), never over another bar
/// or label. `free` is where the lane's previous label ended; `next` where
/// the lane's next bar starts. Returns the text's x and the text.
fn place_label(
    label: &str,
    (x0, w): (f64, f64),
    free: f64,
    next: f64,
    font_px: f64,
) -> Option<(f64, String)> {
    let inside = (x0 + 4.0, w - 8.0);
    let after = ((x0 + w + 4.0).max(free + 4.0), 0.0);
    let after = (after.0, next - 2.0 - after.0);
    let full = text_width(label, font_px);
    if inside.0 >= free && full <= inside.1 {
        return Some((inside.0, label.to_owned()));
    }
    if full <= after.1 {
        return Some((after.0, label.to_owned()));
    }
    let (x, room) = if inside.0 >= free && inside.1 >= after.1 {
        inside
    } else {
        after
    };
    elide(label, room, font_px).map(|t| (x, t))
}

/// The timeline: one row per lane, one bar per target, then one row per
/// template summarising its instances.
// Long on purpose: an SVG template, layout constants then one write per element, read top to bottom.
fn gantt(report: &BuildReport, critical: &BTreeSet<&str>) -> String {
    const WIDTH: f64 = 1100.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 24.0;
    const ROW: f64 = 30.0;
    const BAR: f64 = 22.0;
    const FONT: f64 = 12.0;
    let templates = template_times(report);
    // The left margin holds `lane N` and the templates' names (cut at 180 px).
    let left = templates
        .iter()
        .map(|g| text_width(&format!("{} ×{}", g.name, g.instances), FONT) + 12.0)
        .fold(64.0, f64::max)
        .min(180.0);
    let lanes = report
        .targets
        .iter()
        .map(|t| t.worker + 1)
        .max()
        .unwrap_or(1);
    let end = report
        .targets
        .iter()
        .map(|t| t.start_ms + t.duration_ms)
        .max()
        .unwrap_or(0)
        .max(report.duration_ms)
        .max(1);
    let plot = WIDTH - left - RIGHT;
    let x = |ms: u64| left + ms as f64 / end as f64 * plot;
    let group_top = TOP + lanes as f64 * ROW + if templates.is_empty() { 0.0 } else { 8.0 };
    let height = group_top + templates.len() as f64 * ROW + 8.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg id=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of the build\">"
    );
    // Time axis with round ticks and vertical grid lines.
    let step = tick_step(end, 10);
    s.push_str("<g class=\"axis\">");
    let mut t = 0;
    while t <= end {
        let tx = x(t);
        let _ = write!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/><text x=\"{tx:.1}\" y=\"14\" text-anchor=\"middle\">{}</text>",
            TOP - 4.0,
            height - 4.0,
            format_ms(t)
        );
        t += step;
    }
    s.push_str("</g>\n");
    for lane in 0..lanes {
        let y = TOP + lane as f64 * ROW;
        let _ = writeln!(
            s,
            "<text class=\"lane-label\" x=\"6\" y=\"{:.1}\">lane {lane}</text>",
            y + ROW / 2.0 + 4.0
        );
    }
    // Each lane's bars from left to right, so that a label knows where the
    // previous one ended and where the next bar starts.
    let mut by_lane: Vec<Vec<usize>> = vec![Vec::new(); lanes];
    for (i, t) in report.targets.iter().enumerate() {
        by_lane[t.worker].push(i);
    }
    let mut labels: Vec<Option<(f64, String)>> = vec![None; report.targets.len()];
    for lane in &mut by_lane {
        lane.sort_by_key(|&i| (report.targets[i].start_ms, i));
        let mut free = 0.0;
        for (k, &i) in lane.iter().enumerate() {
            let t = &report.targets[i];
            let x0 = x(t.start_ms);
            let w = (x(t.start_ms + t.duration_ms) - x0).max(3.0);
            let next = lane
                .get(k + 1)
                .map_or(WIDTH, |&j| x(report.targets[j].start_ms))
                .min(WIDTH);
            labels[i] = place_label(&t.name, (x0, w), free, next, FONT);
            free = match &labels[i] {
                Some((lx, text)) => (lx + text_width(text, FONT)).max(x0 + w),
                None => free.max(x0 + w),
            };
        }
    }
    for (i, t) in report.targets.iter().enumerate() {
        let x0 = x(t.start_ms);
        let w = (x(t.start_ms + t.duration_ms) - x0).max(3.0);
        let y = TOP + t.worker as f64 * ROW + (ROW - BAR) / 2.0;
        let word = outcome_word(t.outcome);
        let crit = if critical.contains(t.name.as_str()) {
            " critical"
        } else {
            ""
        };
        let mut tip = format!(
            "{}: {word} in {}, started at {}, lane {}",
            t.name,
            format_ms(t.duration_ms),
            format_ms(t.start_ms),
            t.worker
        );
        if let Some(saved) = t.saved_ms {
            tip.push_str(&format!(", saved {}", format_ms(saved)));
        }
        if let Some(k) = t.key {
            tip.push_str(&format!(", key {}", k.short()));
        }
        if let Some(e) = &t.error {
            tip.push_str(&format!("\n{e}"));
        }
        let _ = write!(
            s,
            "<g class=\"bar {word}{crit}\" id=\"bar-{i}\" data-target=\"{}\" data-outcome=\"{word}\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"3\" fill=\"{}\"/>",
            escape(&t.name),
            escape(&tip),
            outcome_color(t.outcome),
        );
        if let Some((lx, text)) = &labels[i] {
            let elided = if *text == t.name {
                ""
            } else {
                " class=\"elided\""
            };
            let _ = write!(
                s,
                "<text{elided} x=\"{lx:.1}\" y=\"{:.1}\">{}</text>",
                y + BAR / 2.0 + 4.0,
                escape(text)
            );
        }
        s.push_str("</g>\n");
    }
    // One row per template: every instance's span on one line, the
    // template's totals in the row's title.
    for (row, g) in templates.iter().enumerate() {
        let y = group_top + row as f64 * ROW;
        let name = format!("{} ×{}", g.name, g.instances);
        let label = elide(&name, left - 12.0, FONT).unwrap_or_default();
        let _ = write!(
            s,
            "<g class=\"template-row\" data-template=\"{}\"><title>{}</title><rect class=\"band\" x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{ROW}\" fill=\"#f4f6f6\"/><text class=\"lane-label\" x=\"6\" y=\"{:.1}\">{}</text>",
            escape(&g.name),
            escape(&g.summary()),
            y,
            y + ROW / 2.0 + 4.0,
            escape(&label)
        );
        for t in report
            .targets
            .iter()
            .filter(|t| crate::graph::group::template_of(&t.name) == Some(g.name.as_str()))
        {
            let x0 = x(t.start_ms);
            let w = (x(t.start_ms + t.duration_ms) - x0).max(1.0);
            let _ = write!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR}\" fill=\"{}\" opacity=\".6\"/>",
                y + (ROW - BAR) / 2.0,
                outcome_color(t.outcome)
            );
        }
        s.push_str("</g>\n");
    }
    if report.targets.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{left}\" y=\"{:.1}\">no targets were built</text>",
            TOP + ROW / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One row per template: its instances by outcome and the time they took.
fn template_table(report: &BuildReport) -> String {
    let templates = template_times(report);
    if templates.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<table id=\"templates\">\n<thead><tr><th>template</th><th class=\"num\">instances</th><th class=\"num\">hit</th><th class=\"num\">built</th><th class=\"num\">failed</th><th class=\"num\">skipped</th><th class=\"num\">spent</th><th class=\"num\">from</th><th class=\"num\">to</th></tr></thead>\n<tbody>\n",
    );
    for g in &templates {
        let _ = writeln!(
            s,
            "<tr data-template=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&g.name),
            escape(&g.name),
            g.instances,
            g.hits,
            g.built,
            g.failed,
            g.skipped,
            format_ms(g.spent_ms),
            format_ms(g.first_start_ms),
            format_ms(g.last_end_ms)
        );
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// The per-target table, sortable by any column (duration, descending, first).
fn table(report: &BuildReport, critical: &BTreeSet<&str>) -> String {
    let mut s = String::from(
        "<table id=\"targets\">\n<thead><tr><th>target</th><th>outcome</th><th class=\"num\">duration</th><th class=\"num\">start</th><th class=\"num\">lane</th><th class=\"num\">saved</th><th>key</th><th>critical</th></tr></thead>\n<tbody>\n",
    );
    let mut rows: Vec<&TargetReport> = report.targets.iter().collect();
    rows.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.name.cmp(&b.name)));
    for t in rows {
        let word = outcome_word(t.outcome);
        let saved = t.saved_ms.map(format_ms).unwrap_or_default();
        let _ = writeln!(
            s,
            "<tr data-target=\"{name}\" data-outcome=\"{word}\"><td>{name}</td><td title=\"{err}\"><i class=\"dot\" style=\"background:{color}\"></i>{word}</td><td class=\"num\" data-v=\"{d}\">{df}</td><td class=\"num\" data-v=\"{st}\">{stf}</td><td class=\"num\">{lane}</td><td class=\"num\" data-v=\"{sv}\">{saved}</td><td><code>{key}</code></td><td>{crit}</td></tr>",
            name = escape(&t.name),
            err = escape(t.error.as_deref().unwrap_or_default()),
            color = outcome_color(t.outcome),
            d = t.duration_ms,
            df = format_ms(t.duration_ms),
            st = t.start_ms,
            stf = format_ms(t.start_ms),
            lane = t.worker,
            sv = t.saved_ms.unwrap_or(0),
            key = t.key.map(|k| k.short()).unwrap_or_default(),
            crit = if critical.contains(t.name.as_str()) { "yes" } else { "" },
        );
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, start: u64, dur: u64, worker: usize, outcome: Outcome) -> TargetReport {
        TargetReport {
            name: name.into(),
            key: None,
            outcome,
            duration_ms: dur,
            start_ms: start,
            worker,
            saved_ms: None,
            stored: false,
            error: None,
            warnings: vec![],
            stdout: vec![],
            stderr: vec![],
        }
    }

    fn manifest(toml: &str) -> Manifest {
        let root = std::path::Path::new("/project");
        Manifest::parse(toml, &root.join("relocache.toml"), root).unwrap()
    }

    const DIAMOND: &str = r#"
[target.a]
run = "true"
outputs = ["a"]
[target.b]
run = "true"
outputs = ["b"]
deps = ["a"]
[target.c]
run = "true"
outputs = ["c"]
deps = ["a"]
[target.d]
run = "true"
outputs = ["d"]
deps = ["b", "c"]
"#;

    fn report(targets: Vec<TargetReport>) -> BuildReport {
        BuildReport {
            hits: 0,
            built: targets.len(),
            failed: 0,
            skipped: 0,
            not_relocatable_elsewhere: 0,
            duration_ms: targets
                .iter()
                .map(|t| t.start_ms + t.duration_ms)
                .max()
                .unwrap_or(0),
            targets,
            remote_unsigned: 0,
            remote_bad_signature: 0,
        }
    }

    #[test]
    fn critical_path_follows_the_slowest_dep_chain() {
        let m = manifest(DIAMOND);
        let r = report(vec![
            target("a", 0, 10, 0, Outcome::Built),
            target("b", 10, 5, 0, Outcome::Built),
            target("c", 10, 50, 1, Outcome::Built),
            target("d", 60, 7, 0, Outcome::Built),
        ]);
        let cp = critical_path(&r, &m);
        assert_eq!(cp.targets, ["a", "c", "d"]);
        assert_eq!(cp.duration_ms, 67);
        // Make b the slow one: the path moves.
        let r = report(vec![
            target("a", 0, 10, 0, Outcome::Built),
            target("b", 10, 80, 0, Outcome::Built),
            target("c", 10, 50, 1, Outcome::Built),
            target("d", 90, 7, 0, Outcome::Built),
        ]);
        assert_eq!(critical_path(&r, &m).targets, ["a", "b", "d"]);
    }

    #[test]
    fn critical_path_of_an_empty_build_is_empty() {
        let m = manifest(DIAMOND);
        let cp = critical_path(&report(vec![]), &m);
        assert!(cp.targets.is_empty());
        assert_eq!(cp.duration_ms, 0);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1, 10), 1);
        assert_eq!(tick_step(95, 10), 10);
        assert_eq!(tick_step(1234, 10), 200);
        assert_eq!(tick_step(60_000, 10), 10_000);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_ms(7), "7ms");
        assert_eq!(format_ms(1250), "1.25s");
        assert_eq!(format_ms(125_000), "2m05s");
    }

    /// 1,000 instances of `obj` on 2 lanes, mostly too short for a label.
    fn many_instances() -> BuildReport {
        let mut targets = Vec::new();
        let mut at = [0u64; 2];
        for i in 0..1000u64 {
            let lane = (i % 2) as usize;
            let dur = if i % 97 == 0 { 400 } else { i % 7 };
            let name = format!("obj:src/module{:02}/file{i:04}.c", i % 40);
            targets.push(target(&name, at[lane], dur, lane, Outcome::Built));
            at[lane] += dur;
        }
        targets.push(target("lib", at[0].max(at[1]), 50, 0, Outcome::Hit));
        report(targets)
    }

    #[test]
    fn labels_are_cut_to_fit_and_never_overprint() {
        let r = many_instances();
        let svg = gantt(&r, &BTreeSet::new());
        // Each drawn label: its row (y), start and end.
        let mut texts: Vec<(String, f64, f64, String)> = Vec::new();
        for part in svg.split("<text").skip(1) {
            let attr = |a: &str| -> Option<f64> {
                let at = part.find(&format!(" {a}=\""))? + a.len() + 3;
                part[at..].split('"').next()?.parse().ok()
            };
            let body = &part[part.find('>').unwrap() + 1..part.find("</text>").unwrap()];
            if part.contains("class=\"lane-label\"") || !part.contains(" x=") {
                continue;
            }
            let (Some(x), Some(y)) = (attr("x"), attr("y")) else {
                continue;
            };
            if y < 20.0 {
                continue; // the time axis
            }
            let end = x + text_width(body, 12.0);
            texts.push((format!("{y:.1}"), x, end, body.to_owned()));
        }
        assert!(texts.len() > 10, "some labels fit: {}", texts.len());
        assert!(
            texts.iter().any(|t| t.3.ends_with('…')),
            "long names are cut with an ellipsis"
        );
        texts.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        for w in texts.windows(2) {
            if w[0].0 == w[1].0 {
                assert!(w[0].2 <= w[1].1, "{:?} overprints {:?}", w[0], w[1]);
            }
            assert!(w[0].2 <= 1100.0, "{:?} leaves the picture", w[0]);
        }
        // The template is summarised on a row of its own.
        assert_eq!(svg.matches("class=\"template-row\"").count(), 1);
        assert!(
            svg.contains("obj ×1000: 1000 built"),
            "{}",
            &svg[svg.len() - 600..]
        );
    }

    #[test]
    fn template_times_add_up_their_instances() {
        let g = template_times(&many_instances());
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].name.as_str(), g[0].instances, g[0].built),
            ("obj", 1000, 1000)
        );
        assert_eq!(g[0].first_start_ms, 0);
        assert!(elide("abcdef", 1.0, 12.0).is_none());
        assert_eq!(elide("abcdefgh", 12.0 * 0.62 * 4.0, 12.0).unwrap(), "abc…");
    }

    #[test]
    fn names_are_escaped_in_the_page() {
        let m = manifest(DIAMOND);
        let mut r = report(vec![target("a", 0, 10, 0, Outcome::Failed)]);
        r.targets[0].error = Some("exit <1> & \"quoted\"".into());
        let page = html(
            &r,
            &m,
            &PageInfo {
                project: "p<&>".into(),
                generated: "now".into(),
            },
        );
        assert!(page.contains("p&lt;&amp;&gt;"));
        assert!(page.contains("exit &lt;1&gt; &amp; &quot;quoted&quot;"));
        assert!(!page.contains("<1>"));
    }
}

//! The shell shared by the self-contained pages relocache writes (`build
//! --timings`, `graph --format html`) and the XML escaping of every text they
//! show. Pages are XML-compatible HTML ("polyglot"): they open from disk in
//! any browser and parse as XML, so a test can check them with an XML parser.
//! Nothing here may reference the network: no external script, style or font.

/// Escapes `s` for XML text and attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The script run first on every page: records script errors into the DOM
/// (`<html data-errors="…">` and a visible `#errors` box) so that a headless
/// browser's `--dump-dom` shows them.
const ERROR_HOOK: &str = r#"window.onerror = function (msg, src, line) {
  var root = document.documentElement;
  var text = String(msg) + " (line " + line + ")";
  root.setAttribute("data-errors", (root.getAttribute("data-errors") || "") + text + "; ");
  var box = document.getElementById("errors");
  if (box) { box.textContent += text + "\n"; box.style.display = "block"; }
};"#;

/// Shared look: system fonts only, light and dark friendly.
const BASE_CSS: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em 2em; color: #1c2833; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
.sub { color: #566573; margin: 0 0 1em; }
#errors { display: none; background: #fdedec; color: #922b21; border: 1px solid #ec7063; padding: .5em; white-space: pre-wrap; }
svg text { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
"#;

/// A complete page: `title`, extra `css`, the `body` markup (already escaped)
/// and a `script` run at the end of the body. The script must finish by
/// calling `ok()`, which sets `<body data-ok="1">`.
pub fn html(title: &str, css: &str, body: &str, script: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="generator" content="relocache {version}"/>
<title>{title}</title>
<script>//<![CDATA[
{hook}
//]]></script>
<style>/*<![CDATA[*/{base}{css}/*]]>*/</style>
</head>
<body>
<pre id="errors"></pre>
{body}
<script>//<![CDATA[
function ok() {{ document.body.setAttribute("data-ok", "1"); }}
{script}
//]]></script>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        title = escape(title),
        hook = ERROR_HOOK,
        base = BASE_CSS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(escape("x\u{1}y"), "x\u{fffd}y");
    }
}

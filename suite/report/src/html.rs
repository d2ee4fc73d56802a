//! `report.html`: the same tables as `report.md`, and the figures as their SVG (vectors).

use std::path::{Path, PathBuf};

use crate::Subject;
use crate::figures::FigureKind;
use crate::markdown::{
    SELECTION_RULE, Table, VERDICT_COLUMN, VIEWS_HEADING, VIEWS_NOTE, provenance, summary,
    verdicts, views,
};
use crate::results::Results;

/// Text made safe for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table; a row whose verdict column says "failed" is marked so it stands out.
fn table(table: &Table, verdict_column: Option<usize>) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in &table.headers {
        out += &format!("<th>{}</th>", escape(h));
    }
    out += "</tr></thead>\n<tbody>\n";
    for row in &table.rows {
        let failed = verdict_column.is_some_and(|c| row.get(c).is_some_and(|v| v == "failed"));
        out += if failed {
            "<tr class=\"failed\">"
        } else {
            "<tr>"
        };
        for cell in row {
            out += &format!("<td>{}</td>", escape(cell));
        }
        out += "</tr>\n";
    }
    out + "</tbody>\n</table>\n"
}

const STYLE: &str = "body{font-family:'Noto Sans',sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#111}table{border-collapse:collapse;margin:1rem 0}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr.failed td{background:#fde8e8;font-weight:bold}\
figure{margin:2rem 0}img{max-width:100%}figcaption{color:#444}";

/// The report as one HTML page; figures are linked relative to `out` as SVG.
pub fn report(
    subject: &Subject,
    results: &Results,
    figures: &[(FigureKind, PathBuf)],
    out: &Path,
) -> String {
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         <p>Profile <code>{profile}</code>: {about}</p>\n",
        title = escape(&subject.title),
        profile = escape(&subject.profile),
        about = escape(&subject.about),
    );
    page += "<h2>Provenance</h2>\n";
    page += &table(&provenance(subject, results), None);
    page += "<h2>Verdicts</h2>\n";
    if results.verdicts.is_empty() {
        page += "<p>No verdicts written yet (<code>suite verify</code> writes them).</p>\n";
    } else {
        page += &table(&verdicts(results), Some(VERDICT_COLUMN));
    }
    page += "<h2>Measured and the paper</h2>\n";
    page += &table(&summary(results), None);
    page += &format!("<p>{}</p>\n", escape(SELECTION_RULE));
    if let Some(views) = views(results) {
        page += &format!("<h3>{}</h3>\n", escape(VIEWS_HEADING));
        page += &table(&views, None);
        page += &format!("<p>{}</p>\n", escape(VIEWS_NOTE));
    }
    if !figures.is_empty() {
        page += "<h2>Figures</h2>\n";
    }
    for (kind, png) in figures {
        let svg = png.with_extension("svg");
        let link = svg.strip_prefix(out).unwrap_or(&svg).display().to_string();
        page += &format!(
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            escape(&link),
            escape(kind.stem()),
            escape(&kind.caption(&results.dataset))
        );
    }
    page + "</body>\n</html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_failed_rows_marked() {
        assert_eq!(escape("a < b & \"c\""), "a &lt; b &amp; &quot;c&quot;");
        let t = Table {
            headers: vec!["claim", "x", "verdict"],
            rows: vec![
                vec!["one".into(), "<1>".into(), "held".into()],
                vec!["two".into(), "2".into(), "failed".into()],
            ],
        };
        let html = table(&t, Some(2));
        assert!(html.contains("<td>&lt;1&gt;</td>"), "{html}");
        assert_eq!(html.matches("<tr class=\"failed\">").count(), 1, "{html}");
    }
}

//! `report.md`: provenance, the verdicts, the measured numbers beside the paper's, the figures.

use std::path::{Path, PathBuf};

use experiments::text::{markdown_table, mean_sd};

use crate::figures::{FigureKind, display_name};
use crate::results::Results;
use crate::{Subject, Written};

/// The report's text; figures are linked relative to `out`, where the report is written.
pub fn report(
    subject: &Subject,
    results: &Results,
    figures: &[(FigureKind, PathBuf)],
    out: &Path,
) -> String {
    let mut text = format!(
        "# {}\n\nProfile `{}`: {}\n\n",
        subject.title, subject.profile, subject.about
    );
    text += "## Provenance\n\n";
    text += &provenance(subject, results).markdown();
    text += "\n## Verdicts\n\n";
    if results.verdicts.is_empty() {
        text += "No verdicts written yet (`suite verify` writes them).\n";
    } else {
        let mut table = verdicts(results);
        for row in &mut table.rows {
            if row[VERDICT_COLUMN] == "failed" {
                row[VERDICT_COLUMN] = "**failed**".into();
            }
        }
        text += &table.markdown();
    }
    text += "\n## Measured and the paper\n\n";
    text += &summary(results).markdown();
    text += &format!("\n{SELECTION_RULE}\n");
    if let Some(views) = views(results) {
        text += &format!("\n### {VIEWS_HEADING}\n\n");
        text += &views.markdown();
        text += &format!("\n{VIEWS_NOTE}\n");
    }
    if !figures.is_empty() {
        text += "\n## Figures\n";
    }
    for (kind, png) in figures {
        let link = png.strip_prefix(out).unwrap_or(png).display().to_string();
        text += &format!(
            "\n![{}]({link})\n\n{}\n",
            kind.stem(),
            kind.caption(&results.dataset)
        );
    }
    text
}

fn distinct_joined(values: impl Iterator<Item = String>) -> String {
    let mut v: Vec<String> = values.collect();
    v.sort();
    v.dedup();
    v.join(", ")
}

/// A table as plain text cells, rendered as Markdown here and as HTML by [`crate::html`].
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        markdown_table(&self.headers, &self.rows)
    }
}

pub fn provenance(subject: &Subject, results: &Results) -> Table {
    let runs = &results.runs;
    let wall: f64 = runs.iter().map(|r| r.wall_s).sum();
    let seeds = distinct_joined(runs.iter().map(|r| r.seed.to_string()));
    let command = match &results.invocation {
        Some(invocation) => invocation.command.clone(),
        None => format!(
            "not recorded (the tables predate sweep.json); `suite reproduce {} --profile {}` \
             recreates them",
            subject.experiment, subject.profile
        ),
    };
    let versions = distinct_joined(
        runs.iter()
            .filter(|r| !r.suite_version.is_empty())
            .map(|r| format!("suite {}, candle {}", r.suite_version, r.candle_version)),
    );
    let rows = vec![
        vec!["command".into(), command],
        vec!["tables".into(), results.dir.display().to_string()],
        vec![
            "runs".into(),
            format!(
                "{} ({}; seeds {seeds})",
                runs.len(),
                distinct_joined(runs.iter().map(|r| display_name(&r.model)))
            ),
        ],
        vec![
            "iterations".into(),
            distinct_joined(runs.iter().map(|r| r.iterations.to_string())),
        ],
        vec![
            "device, kernels".into(),
            distinct_joined(runs.iter().map(|r| format!("{}, {}", r.device, r.kernels))),
        ],
        vec![
            "commit".into(),
            distinct_joined(runs.iter().map(|r| r.commit.clone())),
        ],
        vec![
            "versions".into(),
            if versions.is_empty() {
                "not recorded in runs.parquet (written before its version columns)".into()
            } else {
                versions
            },
        ],
        vec![
            "wall time".into(),
            format!("{:.2} h over all runs", wall / 3600.0),
        ],
        vec![
            "report".into(),
            format!("written by suite {}", env!("CARGO_PKG_VERSION")),
        ],
    ];
    Table {
        headers: vec!["", ""],
        rows,
    }
}

/// The column of [`verdicts`] that holds the verdict.
pub const VERDICT_COLUMN: usize = 2;

pub fn verdicts(results: &Results) -> Table {
    let rows: Vec<Vec<String>> = results
        .verdicts
        .iter()
        .map(|v| {
            vec![
                v.claim.clone(),
                v.statement.clone(),
                v.verdict.clone(),
                v.paper.clone(),
                v.measured.clone(),
                v.why.clone(),
            ]
        })
        .collect();
    Table {
        headers: vec!["claim", "statement", "verdict", "paper", "measured", "why"],
        rows,
    }
}

pub fn summary(results: &Results) -> Table {
    if results.dataset == "imagenet" {
        return imagenet_summary(results);
    }
    let rows: Vec<Vec<String>> = results
        .summary
        .iter()
        .map(|s| {
            // Table 6 gives ResNet-110 as mean ± std (and its best run): the mean is compared.
            let reference = s.paper_error_mean.or(s.paper_error);
            let paper = match (s.paper_error_mean, s.paper_error_std, s.paper_error) {
                (Some(mean), Some(sd), Some(best)) => {
                    format!("{mean:.2} ± {sd:.2} (best {best:.2})")
                }
                (_, _, Some(p)) => format!("{p:.2}"),
                _ => String::new(),
            };
            let diff = reference
                .map(|p| format!("{:+.2}", s.test_error_mean - p))
                .unwrap_or_default();
            vec![
                display_name(&s.model),
                s.seeds.to_string(),
                format!("{:.2}", s.train_error_mean),
                mean_sd(s.test_error_mean, s.test_error_std),
                paper,
                diff,
            ]
        })
        .collect();
    Table {
        headers: vec![
            "net",
            "seeds",
            "training error",
            "test error",
            "paper (Table 6)",
            "measured − paper",
        ],
        rows,
    }
}

/// ImageNet's summary: the paper prints no center-crop errors, so its numbers stand beside the
/// test views' instead ([`views`]).
fn imagenet_summary(results: &Results) -> Table {
    let rows = results
        .summary
        .iter()
        .map(|s| {
            vec![
                display_name(&s.model),
                s.seeds.to_string(),
                format!("{:.2}", s.train_error_mean),
                mean_sd(s.test_error_mean, s.test_error_std),
            ]
        })
        .collect();
    Table {
        headers: vec!["net", "seeds", "training error", "val. error (center crop)"],
        rows,
    }
}

/// The heading over [`views`].
pub const VIEWS_HEADING: &str = "Under the paper's test views";

/// The sentence under [`views`].
pub const VIEWS_NOTE: &str = "Top-1 and top-5 validation errors in percent of the final \
     weights (mean ± std over seeds), beside the paper's for the same net and views; the paper's \
     are for its full protocol (all 1,000 classes at full resolution), which a quick profile \
     reduces.";

/// The nets under the paper's test views beside the paper's numbers, where the sweep scored any.
pub fn views(results: &Results) -> Option<Table> {
    if results.views.is_empty() {
        return None;
    }
    let number = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
    let rows = results
        .views
        .iter()
        .map(|v| {
            vec![
                display_name(&v.model),
                v.views.clone(),
                v.seeds.to_string(),
                mean_sd(v.top1_error_mean, v.top1_error_std),
                mean_sd(v.top5_error_mean, v.top5_error_std),
                number(v.paper_top1_error),
                number(v.paper_top5_error),
                v.paper_top1_error
                    .map(|p| format!("{:+.2}", v.top1_error_mean - p))
                    .unwrap_or_default(),
                v.paper_source.clone(),
            ]
        })
        .collect();
    Some(Table {
        headers: vec![
            "net",
            "views",
            "seeds",
            "top-1 error",
            "top-5 error",
            "paper top-1",
            "paper top-5",
            "top-1 measured − paper",
            "source",
        ],
        rows,
    })
}

/// The sentence under the summary table.
pub const SELECTION_RULE: &str = "Errors in percent after the last iteration (mean ± std over \
     seeds); the best test error seen during training is in runs.parquet and is never used for \
     claims.";

/// The verdicts a report can hold, in the order the index counts them.
const VERDICTS: [&str; 5] = ["held", "failed", "inconclusive", "not run", "n/a"];

/// The index's rows: per report, its experiment, title, verdict counts and `document` (one of
/// the report's files) relative to `dir`, in the last column.
pub fn index_table(
    reports: &[(Subject, Written)],
    dir: &Path,
    document: impl Fn(&Written) -> &PathBuf,
) -> Table {
    let rows = reports
        .iter()
        .map(|(subject, written)| {
            let path = document(written);
            let mut row = vec![subject.experiment.clone(), subject.title.clone()];
            row.extend(VERDICTS.iter().map(|v| {
                let n = written.verdicts.iter().filter(|l| l.verdict == *v).count();
                n.to_string()
            }));
            row.push(path.strip_prefix(dir).unwrap_or(path).display().to_string());
            row
        })
        .collect();
    let mut headers = vec!["experiment", "title"];
    headers.extend(VERDICTS);
    headers.push("report");
    Table { headers, rows }
}

/// An index over reports of one profile: per experiment, its verdict counts and a link.
pub fn index(profile: &str, reports: &[(Subject, Written)], dir: &Path) -> String {
    let mut table = index_table(reports, dir, |w| &w.markdown);
    // The experiment's name links its report; the path column is then redundant.
    table.headers.pop();
    for row in &mut table.rows {
        let link = row.pop().unwrap_or_default();
        row[0] = format!("[{}]({link})", row[0]);
    }
    format!(
        "# Reports, {profile} profile\n\nEvery experiment with results in this profile, with its \
         verdict counts.\n\n{}",
        table.markdown()
    )
}

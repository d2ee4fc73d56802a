//! Reports: a sweep's result tables (`results/<experiment>/<profile>/`) turned into the paper's
//! figures (PNG and SVG, drawn the same way in both) and a report with the provenance, the
//! verdicts and the paper's numbers beside the measured ones, as Markdown, HTML and PDF (figures
//! embedded as vectors). The only crate besides `experiments` that reads polars tables, and the
//! only one that draws; nothing that trains depends on it.

mod figures;
mod font;
mod html;
mod markdown;
mod pdf;
mod results;

use std::path::{Path, PathBuf};

pub use figures::FigureKind;
pub use results::{CurvePoint, Results, VerdictLine};

/// What went wrong while reading results or writing a report; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Boxed: `experiments::Error` is large, and every drawing call returns this type.
    #[error(transparent)]
    Experiments(Box<experiments::Error>),
    #[error("drawing {}: {message}", .path.display())]
    Draw { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] files::Error),
}

impl From<experiments::Error> for Error {
    fn from(e: experiments::Error) -> Self {
        Self::Experiments(Box::new(e))
    }
}

/// Which sweep a report is about, and how it was produced.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The experiment's name (`table6`, `fig1`, ...).
    pub experiment: String,
    /// Its config's title.
    pub title: String,
    pub profile: String,
    /// The profile's own description, from the config.
    pub about: String,
    /// The data the runs trained on (`cifar10`, `imagenet`), from the config.
    pub dataset: String,
}

/// The files a report wrote, and the verdicts it shows.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub figures: Vec<PathBuf>,
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub pdf: PathBuf,
    pub verdicts: Vec<VerdictLine>,
}

impl Written {
    /// Every file written: the figures, then the documents.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.figures
            .iter()
            .chain([&self.markdown, &self.html, &self.pdf])
    }
}

/// Reads `<results>/<experiment>/<profile>/` and writes the figures and the report into
/// `out` (created if missing). An experiment without results is `experiments::Error::NoResults`,
/// which names the command that makes them.
pub fn write_report(subject: &Subject, results: &Path, out: &Path) -> Result<Written, Error> {
    let tables = experiments::sweep::tables_dir(results, &subject.experiment, &subject.profile);
    let data = Results::read(&tables, subject)?;
    std::fs::create_dir_all(out).map_err(|source| files::Error {
        path: out.to_path_buf(),
        source,
    })?;
    let mut written = Written::default();
    let mut drawn = Vec::new();
    let mut svgs = Vec::new();
    for kind in FigureKind::for_results(&subject.experiment, &data) {
        let figure = figures::draw(kind, &data, out)?;
        drawn.push((kind, figure.png.clone()));
        written.figures.extend([figure.png, figure.svg.clone()]);
        svgs.push((kind, figure.svg, figure.svg_text));
    }
    let text = markdown::report(subject, &data, &drawn, out);
    let path = out.join("report.md");
    files::write_atomic(&path, text.as_bytes())?;
    written.markdown = path;
    let page = html::report(subject, &data, &drawn, out);
    let path = out.join("report.html");
    files::write_atomic(&path, page.as_bytes())?;
    written.html = path;
    let path = out.join("report.pdf");
    let bytes = pdf::report(subject, &data, &svgs, &path)?;
    files::write_atomic(&path, &bytes)?;
    written.pdf = path;
    written.verdicts = data.verdicts;
    Ok(written)
}

/// Writes `<reports>/index-<profile>.md` and `.pdf`: one line per report with its verdict counts
/// and where it is. Returns both paths.
pub fn write_index(
    profile: &str,
    reports: &[(Subject, Written)],
    dir: &Path,
) -> Result<[PathBuf; 2], Error> {
    std::fs::create_dir_all(dir).map_err(|source| files::Error {
        path: dir.to_path_buf(),
        source,
    })?;
    let markdown = dir.join(format!("index-{profile}.md"));
    files::write_atomic(&markdown, markdown::index(profile, reports, dir).as_bytes())?;
    let pdf = dir.join(format!("index-{profile}.pdf"));
    files::write_atomic(&pdf, &pdf::index(profile, reports, dir, &pdf)?)?;
    Ok([markdown, pdf])
}

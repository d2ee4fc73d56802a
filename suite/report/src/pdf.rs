//! `report.pdf` and the index PDF: A4 landscape pages with the title, provenance, verdicts and
//! the measured numbers beside the paper's as tables, then one page per figure, embedded from its
//! SVG so that it stays a vector. Text is set in the same bundled Noto Sans as the figures, so a
//! machine without fonts writes the same document.
//!
//! Layout is deliberately simple: text flows top to bottom, table columns share the page's width
//! by their content, cells wrap at word boundaries, and a row that does not fit starts a new page
//! under a repeated header. The document is laid out first as marks per page, then drawn, so that
//! every page's footer can say how many pages there are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use krilla::Document;
use krilla::color::{luma, rgb};
use krilla::destination::XyzDestination;
use krilla::geom::{PathBuilder, Point, Size, Transform};
use krilla::metadata::Metadata;
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla_svg::{SurfaceExt, SvgSettings};

use crate::figures::FigureKind;
use crate::markdown::{self, SELECTION_RULE, Table, VERDICT_COLUMN};
use crate::results::Results;
use crate::{Error, Subject, Written};

/// A4 landscape, in points: the verdict table's six columns need the width.
const PAGE: (f32, f32) = (841.89, 595.28);
const MARGIN: f32 = 42.0;
/// The lowest baseline a line of body text may have; the footer sits below it.
const BOTTOM: f32 = PAGE.1 - MARGIN;
const WIDTH: f32 = PAGE.0 - 2.0 * MARGIN;
/// Horizontal and vertical padding inside a table cell.
const PAD: (f32, f32) = (4.0, 3.0);
/// Failed claims stand out in the Okabe-Ito vermillion the figures use.
const FAILED: (u8, u8, u8) = (213, 94, 0);

/// A typeface as krilla embeds it and as ttf-parser measures it.
struct Face {
    font: Font,
    metrics: ttf_parser::Face<'static>,
}

impl Face {
    fn load(bytes: &'static [u8]) -> Option<Self> {
        Some(Self {
            font: Font::new(Arc::new(bytes.to_vec()).into(), 0)?,
            metrics: ttf_parser::Face::parse(bytes, 0).ok()?,
        })
    }

    /// The advance width of `text` at `size` points (kerning left out: line breaking only needs
    /// to stay on the safe side of the column).
    fn width(&self, text: &str, size: f32) -> f32 {
        let units: u32 = text
            .chars()
            .map(|c| {
                self.metrics
                    .glyph_index(c)
                    .and_then(|g| self.metrics.glyph_hor_advance(g))
                    .map_or(self.metrics.units_per_em() as u32 / 2, u32::from)
            })
            .sum();
        units as f32 * size / self.metrics.units_per_em() as f32
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Regular,
    Bold,
    /// Bold in vermillion: a failed claim.
    Failed,
}

/// What a page holds, in page coordinates (points from the top left; text at its baseline).
enum Mark {
    Text {
        x: f32,
        y: f32,
        size: f32,
        style: Style,
        text: String,
    },
    Rule {
        x: f32,
        y: f32,
        length: f32,
        width: f32,
        grey: u8,
    },
    Figure {
        tree: Box<usvg::Tree>,
        x: f32,
        y: f32,
        size: Size,
    },
}

/// Pages being laid out.
struct Pages {
    regular: Face,
    bold: Face,
    pages: Vec<Vec<Mark>>,
    /// Where the next block starts on the last page.
    y: f32,
    /// Headings, for the PDF's outline: (text, page index, y).
    headings: Vec<(String, usize, f32)>,
}

impl Pages {
    fn new(path: &Path) -> Result<Self, Error> {
        let face = |bytes| {
            Face::load(bytes).ok_or_else(|| Error::Draw {
                path: path.to_path_buf(),
                message: "the bundled Noto Sans does not load".into(),
            })
        };
        Ok(Self {
            regular: face(notosans::REGULAR_TTF)?,
            bold: face(notosans::BOLD_TTF)?,
            pages: Vec::new(),
            y: MARGIN,
            headings: Vec::new(),
        })
    }

    fn face(&self, style: Style) -> &Face {
        match style {
            Style::Regular => &self.regular,
            Style::Bold | Style::Failed => &self.bold,
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN;
    }

    /// Starts a new page unless `height` more points fit on this one.
    fn room(&mut self, height: f32) {
        if self.pages.is_empty() || self.y + height > BOTTOM {
            self.new_page();
        }
    }

    fn mark(&mut self, mark: Mark) {
        if self.pages.is_empty() {
            self.new_page();
        }
        if let Some(page) = self.pages.last_mut() {
            page.push(mark);
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, style: Style, text: &str) {
        self.mark(Mark::Text {
            x,
            y,
            size,
            style,
            text: text.to_string(),
        });
    }

    /// A bold heading, kept on one page with the first lines of what follows it.
    fn heading(&mut self, text: &str, size: f32) {
        self.room(size * 1.5 + 60.0);
        self.headings
            .push((text.to_string(), self.pages.len() - 1, self.y));
        self.y += size;
        self.text(MARGIN, self.y, size, Style::Bold, text);
        self.y += size * 0.6;
    }

    fn paragraph(&mut self, text: &str, size: f32, style: Style) {
        let lines = wrap(text, WIDTH, |s| self.face(style).width(s, size));
        for line in lines {
            self.room(size * 1.35);
            self.y += size * 1.35;
            self.text(MARGIN, self.y - size * 0.3, size, style, &line);
        }
    }

    /// A horizontal line `length` points long at the current height, from the left margin.
    fn rule(&mut self, length: f32, width: f32, grey: u8) {
        let y = self.y;
        self.mark(Mark::Rule {
            x: MARGIN,
            y,
            length,
            width,
            grey,
        });
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }

    /// `table` across the page's width; `style` picks how a body cell is set. A table whose
    /// headers are all empty is drawn without a header row.
    fn table(&mut self, table: &Table, size: f32, style: impl Fn(usize, usize) -> Style) {
        let columns = table.headers.len();
        let line = size * 1.3;
        let measure = |text: &str, style: Style| self.face(style).width(text, size);
        let mut natural = vec![0f32; columns];
        let mut least = vec![0f32; columns];
        for (c, header) in table.headers.iter().enumerate() {
            natural[c] = measure(header, Style::Bold);
            least[c] = longest_word(header, |w| measure(w, Style::Bold));
        }
        for (r, row) in table.rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate().take(columns) {
                let s = style(r, c);
                natural[c] = natural[c].max(measure(cell, s));
                least[c] = least[c].max(longest_word(cell, |w| measure(w, s)));
            }
        }
        let pad = |w: &mut Vec<f32>| w.iter_mut().for_each(|w| *w += 2.0 * PAD.0);
        pad(&mut natural);
        pad(&mut least);
        let widths = column_widths(&natural, &least, WIDTH);
        let lefts: Vec<f32> = widths
            .iter()
            .scan(MARGIN, |x, w| {
                let left = *x;
                *x += w;
                Some(left)
            })
            .collect();
        let layout = |cells: &[String], style: &dyn Fn(usize) -> Style| -> Vec<Vec<String>> {
            cells
                .iter()
                .enumerate()
                .take(columns)
                .map(|(c, cell)| {
                    let face = self.face(style(c));
                    wrap(cell, widths[c] - 2.0 * PAD.0, |s| face.width(s, size))
                })
                .collect()
        };
        let headers: Vec<String> = table.headers.iter().map(|h| h.to_string()).collect();
        let header_lines = if headers.iter().all(String::is_empty) {
            None
        } else {
            Some(layout(&headers, &|_| Style::Bold))
        };
        let height = |lines: &[Vec<String>]| {
            lines.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * line + 2.0 * PAD.1
        };
        let total = widths.iter().sum::<f32>();
        let body: Vec<Vec<Vec<String>>> = table
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| layout(row, &|c| style(r, c)))
            .collect();
        let draw_row = |pages: &mut Self, lines: &[Vec<String>], style: &dyn Fn(usize) -> Style| {
            let top = pages.y;
            for (c, cell) in lines.iter().enumerate() {
                for (k, text) in cell.iter().enumerate() {
                    let baseline = top + PAD.1 + size * 0.95 + k as f32 * line;
                    pages.text(lefts[c] + PAD.0, baseline, size, style(c), text);
                }
            }
            pages.y = top + height(lines);
        };
        let header = |pages: &mut Self| {
            if let Some(lines) = &header_lines {
                draw_row(pages, lines, &|_| Style::Bold);
                pages.rule(total, 0.8, 0);
            }
        };
        let header_height = header_lines.as_deref().map_or(0.0, height);
        for (r, lines) in body.iter().enumerate() {
            let needed = height(lines);
            if r == 0 || self.y + needed > BOTTOM {
                self.room(header_height + needed);
                header(self);
            }
            draw_row(self, lines, &|c| style(r, c));
            self.rule(total, 0.4, 190);
        }
        if table.rows.is_empty() {
            self.room(header_height);
            header(self);
        }
    }

    /// A page of its own for a figure, scaled to fill the space above its caption.
    fn figure(&mut self, tree: usvg::Tree, title: &str, caption: &str) -> Option<()> {
        self.new_page();
        self.heading(title, 13.0);
        let caption_size = 9.5;
        let caption_lines = wrap(caption, WIDTH, |s| self.regular.width(s, caption_size));
        let caption_height = caption_lines.len() as f32 * caption_size * 1.35 + 12.0;
        let (w, h) = (tree.size().width(), tree.size().height());
        let scale = (WIDTH / w).min((BOTTOM - self.y - caption_height) / h);
        let size = Size::from_wh(w * scale, h * scale)?;
        let x = MARGIN + (WIDTH - size.width()) / 2.0;
        let y = self.y;
        self.mark(Mark::Figure {
            tree: Box::new(tree),
            x,
            y,
            size,
        });
        self.y += size.height() + 12.0;
        self.paragraph(caption, caption_size, Style::Regular);
        Some(())
    }

    /// Draws every page (with `footer` and the page number at the bottom) and the outline.
    fn finish(self, title: &str, footer: &str) -> Result<Vec<u8>, String> {
        let mut document = Document::new();
        let count = self.pages.len();
        for (i, marks) in self.pages.into_iter().enumerate() {
            let settings = PageSettings::from_wh(PAGE.0, PAGE.1).ok_or("no page size")?;
            let mut page = document.start_page_with(settings);
            let mut surface = page.surface();
            for mark in marks {
                draw(&mut surface, &self.regular, &self.bold, mark);
            }
            let footer = format!("{footer} · page {} of {count}", i + 1);
            draw(
                &mut surface,
                &self.regular,
                &self.bold,
                Mark::Text {
                    x: MARGIN,
                    y: PAGE.1 - MARGIN / 2.0,
                    size: 8.0,
                    style: Style::Regular,
                    text: footer,
                },
            );
            surface.finish();
            page.finish();
        }
        let mut outline = Outline::new();
        for (text, page, y) in self.headings {
            outline.push_child(OutlineNode::new(
                text,
                XyzDestination::new(page, Point::from_xy(0.0, y)),
            ));
        }
        document.set_outline(outline);
        document.set_metadata(
            Metadata::new()
                .title(title.to_string())
                .creator(format!("resnet-repro suite {}", env!("CARGO_PKG_VERSION"))),
        );
        document.finish().map_err(|e| format!("{e:?}"))
    }
}

fn draw(surface: &mut Surface<'_>, regular: &Face, bold: &Face, mark: Mark) {
    match mark {
        Mark::Text {
            x,
            y,
            size,
            style,
            text,
        } => {
            let (face, colour) = match style {
                Style::Regular => (regular, rgb::Color::black()),
                Style::Bold => (bold, rgb::Color::black()),
                Style::Failed => (bold, rgb::Color::new(FAILED.0, FAILED.1, FAILED.2)),
            };
            surface.set_fill(Some(Fill {
                paint: colour.into(),
                ..Fill::default()
            }));
            surface.draw_text(
                Point::from_xy(x, y),
                face.font.clone(),
                size,
                &text,
                false,
                TextDirection::Auto,
            );
            surface.set_fill(Some(Fill::default()));
        }
        Mark::Rule {
            x,
            y,
            length,
            width,
            grey,
        } => {
            let mut path = PathBuilder::new();
            path.move_to(x, y);
            path.line_to(x + length, y);
            let Some(path) = path.finish() else {
                return;
            };
            surface.set_fill(None);
            surface.set_stroke(Some(Stroke {
                paint: luma::Color::new(grey).into(),
                width,
                ..Stroke::default()
            }));
            surface.draw_path(&path);
            surface.set_stroke(None);
            surface.set_fill(Some(Fill::default()));
        }
        Mark::Figure { tree, x, y, size } => {
            surface.push_transform(&Transform::from_translate(x, y));
            surface.draw_svg(&tree, size, SvgSettings::default());
            surface.pop();
        }
    }
}

/// Column widths that fill at most `available` points: every column gets its natural width if
/// all fit; otherwise every column gets its longest word and the space left is shared in
/// proportion to how much more each column would need for its natural width (the automatic
/// table layout of HTML). Words that do not fit even so are broken by [`wrap`].
fn column_widths(natural: &[f32], least: &[f32], available: f32) -> Vec<f32> {
    if natural.iter().sum::<f32>() <= available {
        return natural.to_vec();
    }
    let least_sum: f32 = least.iter().sum();
    if least_sum >= available {
        return least.iter().map(|l| l * available / least_sum).collect();
    }
    let wanted: Vec<f32> = natural
        .iter()
        .zip(least)
        .map(|(n, l)| (n - l).max(0.0))
        .collect();
    let wanted_sum: f32 = wanted.iter().sum();
    let spare = available - least_sum;
    least
        .iter()
        .zip(&wanted)
        .map(|(l, w)| l + spare * w / wanted_sum)
        .collect()
}

fn longest_word(text: &str, width: impl Fn(&str) -> f32) -> f32 {
    text.split_whitespace().map(width).fold(0.0, f32::max)
}

/// `text` broken into lines no wider than `max` by `width`, at spaces; a word wider than a line
/// (a path, a hash) is broken between characters. The Markdown code marks the tables share with
/// report.md are dropped: the PDF sets everything in one face.
fn wrap(text: &str, max: f32, width: impl Fn(&str) -> f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word = word.replace('`', "");
        let word = word.as_str();
        if word.is_empty() {
            continue;
        }
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if width(&candidate) <= max {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if width(&line) > max && line.chars().count() > 1 {
                let last = line.pop().unwrap_or(c);
                lines.push(std::mem::take(&mut line));
                line.push(last);
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The report of one sweep as PDF bytes; `figures` are the SVGs to embed (their paths name
/// them), `path` is where the PDF goes (for errors).
pub fn report(
    subject: &Subject,
    results: &Results,
    figures: &[(FigureKind, PathBuf, String)],
    path: &Path,
) -> Result<Vec<u8>, Error> {
    let failed = |message: String| Error::Draw {
        path: path.to_path_buf(),
        message,
    };
    let mut pages = Pages::new(path)?;
    pages.new_page();
    pages.y += 4.0;
    pages.paragraph(&subject.title, 18.0, Style::Bold);
    pages.paragraph(
        &format!("Profile {}: {}", subject.profile, subject.about),
        9.5,
        Style::Regular,
    );
    pages.gap(6.0);
    pages.heading("Provenance", 13.0);
    pages.table(&markdown::provenance(subject, results), 9.0, |_, c| {
        if c == 0 { Style::Bold } else { Style::Regular }
    });
    pages.gap(10.0);
    pages.heading("Verdicts", 13.0);
    if results.verdicts.is_empty() {
        pages.paragraph(
            "No verdicts written yet (`suite verify` writes them).",
            9.0,
            Style::Regular,
        );
    } else {
        let table = markdown::verdicts(results);
        pages.table(&table, 8.0, |r, c| {
            if c == VERDICT_COLUMN && table.rows[r][c] == "failed" {
                Style::Failed
            } else {
                Style::Regular
            }
        });
    }
    pages.gap(10.0);
    pages.heading("Measured and the paper", 13.0);
    pages.table(&markdown::summary(results), 9.0, |_, _| Style::Regular);
    pages.gap(4.0);
    pages.paragraph(SELECTION_RULE, 8.5, Style::Regular);
    if let Some(views) = markdown::views(results) {
        pages.gap(8.0);
        pages.heading(markdown::VIEWS_HEADING, 11.0);
        pages.table(&views, 8.0, |_, _| Style::Regular);
        pages.gap(4.0);
        pages.paragraph(markdown::VIEWS_NOTE, 8.5, Style::Regular);
    }

    let options = svg_options();
    for (number, (kind, svg, text)) in figures.iter().enumerate() {
        let tree = usvg::Tree::from_str(text, &options)
            .map_err(|e| failed(format!("reading {}: {e}", svg.display())))?;
        let name = format!(
            "Figure {}. {} ({})",
            number + 1,
            kind.title(),
            svg.file_name().unwrap_or_default().to_string_lossy()
        );
        pages
            .figure(tree, &name, &kind.caption(&results.dataset))
            .ok_or_else(|| failed(format!("{} has no size", svg.display())))?;
    }
    let footer = format!(
        "resnet-repro · {} · {} profile",
        subject.experiment, subject.profile
    );
    pages.finish(&subject.title, &footer).map_err(failed)
}

/// The index over the reports of one profile as PDF bytes: per experiment, its title, verdict
/// counts and where its report is (relative to `dir`).
pub fn index(
    profile: &str,
    reports: &[(Subject, Written)],
    dir: &Path,
    path: &Path,
) -> Result<Vec<u8>, Error> {
    let mut pages = Pages::new(path)?;
    let title = format!("Reports, {profile} profile");
    pages.new_page();
    pages.y += 4.0;
    pages.paragraph(&title, 18.0, Style::Bold);
    pages.paragraph(
        "Every experiment with results in this profile, with its verdict counts and its report.",
        9.5,
        Style::Regular,
    );
    pages.gap(8.0);
    let table = markdown::index_table(reports, dir, |w| &w.pdf);
    let failed_column = table.headers.iter().position(|h| *h == "failed");
    pages.table(&table, 9.0, |r, c| {
        if Some(c) == failed_column && table.rows[r][c] != "0" {
            Style::Failed
        } else {
            Style::Regular
        }
    });
    let footer = format!("resnet-repro · {profile} profile");
    pages
        .finish(&title, &footer)
        .map_err(|message| Error::Draw {
            path: path.to_path_buf(),
            message,
        })
}

/// usvg reads plotters' `sans-serif` text with the bundled Noto Sans, so a machine without
/// fonts draws the same letters as the PNG.
fn svg_options() -> usvg::Options<'static> {
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(notosans::REGULAR_TTF.to_vec());
    fonts.load_font_data(notosans::BOLD_TTF.to_vec());
    fonts.set_sans_serif_family("Noto Sans");
    usvg::Options {
        font_family: "Noto Sans".into(),
        fontdb: Arc::new(fonts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One point per character: widths are easy to reason about.
    fn chars(s: &str) -> f32 {
        s.chars().count() as f32
    }

    #[test]
    fn words_wrap_at_the_width_and_long_words_break() {
        assert_eq!(
            wrap("one two three four", 9.0, chars),
            vec!["one two", "three", "four"]
        );
        assert_eq!(wrap("", 9.0, chars), Vec::<String>::new());
        assert_eq!(
            wrap("run `suite` ` now", 20.0, chars),
            vec!["run suite now"]
        );
        assert_eq!(
            wrap("a 0123456789ab", 5.0, chars),
            vec!["a", "01234", "56789", "ab"]
        );
    }

    #[test]
    fn columns_keep_natural_widths_when_they_fit() {
        assert_eq!(
            column_widths(&[10.0, 20.0], &[5.0, 5.0], 40.0),
            vec![10.0, 20.0]
        );
    }

    #[test]
    fn columns_get_their_longest_word_and_share_the_rest_by_what_they_lack() {
        let widths = column_widths(&[10.0, 300.0, 150.0], &[10.0, 20.0, 20.0], 210.0);
        assert_eq!(widths[0], 10.0);
        assert!(
            (widths.iter().sum::<f32>() - 210.0).abs() < 1e-3,
            "{widths:?}"
        );
        // 280 and 130 points lacking share the 160 left over.
        assert!(
            (widths[1] - (20.0 + 160.0 * 280.0 / 410.0)).abs() < 1e-3,
            "{widths:?}"
        );
    }

    #[test]
    fn no_column_gets_narrower_than_its_longest_word() {
        let widths = column_widths(&[100.0, 100.0], &[90.0, 10.0], 100.0);
        assert_eq!(widths, vec![90.0, 10.0]);
    }

    #[test]
    fn words_wider_than_the_page_shrink_in_proportion() {
        let widths = column_widths(&[300.0, 100.0], &[150.0, 50.0], 100.0);
        assert_eq!(widths, vec![75.0, 25.0]);
    }

    #[test]
    fn noto_sans_measures_wider_text_wider() {
        let face = Face::load(notosans::REGULAR_TTF).expect("the bundled font loads");
        let (i, m) = (face.width("iiii", 10.0), face.width("MMMM", 10.0));
        assert!(i > 0.0 && m > 2.0 * i, "iiii {i}, MMMM {m}");
        assert!((face.width("ab", 20.0) - 2.0 * face.width("ab", 10.0)).abs() < 1e-3);
    }
}

//! The figures, in the paper's style: error against iterations (1e4) with thin dashed training
//! error and bold test error, one colour per net; Fig. 7's response std by layer and sorted; final
//! test error against depth beside Table 6; the skip-span ablation. Each is drawn by one generic
//! function on any plotters backend, so the PNG and the SVG are the same picture.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::results::{Results, distinct_in_order};
use crate::{Error, font};

/// A figure a report can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureKind {
    /// Training curves (Fig. 1, 6).
    Curves,
    /// Fig. 7: standard deviation of layer responses.
    Responses,
    /// Final test error against depth, measured and Table 6's.
    DepthError,
    /// Final test error against the number of convs a shortcut skips.
    SkipSpan,
}

impl FigureKind {
    /// The file name without extension.
    pub fn stem(self) -> &'static str {
        match self {
            Self::Curves => "curves",
            Self::Responses => "layer-responses",
            Self::DepthError => "depth-error",
            Self::SkipSpan => "skip-span",
        }
    }

    /// The figure's heading in the report.
    pub fn title(self) -> &'static str {
        match self {
            Self::Curves => "Training curves",
            Self::Responses => "Standard deviation of layer responses",
            Self::DepthError => "Test error against depth",
            Self::SkipSpan => "Test error against the span of a shortcut",
        }
    }

    /// What the figure shows, for its caption in the report on `dataset`'s runs.
    pub fn caption(self, dataset: &str) -> String {
        let imagenet = dataset == "imagenet";
        match self {
            Self::Curves if imagenet => "Training on ImageNet: thin dashed lines are training \
                 error, bold lines validation error of the center crop (mean over seeds where a \
                 net has several)."
                .into(),
            Self::Curves => "Training on CIFAR-10: thin dashed lines are training error, bold \
                 lines test error (mean over seeds where a net has several)."
                .into(),
            Self::Responses => "Standard deviation of the 3x3 layers' responses (BN output, \
                 before the ReLU and the addition) on the test set: by layer, and sorted in \
                 descending order."
                .into(),
            Self::DepthError if imagenet => "Final validation error of the center crop against \
                 depth, mean ± std over seeds; the paper prints no center-crop errors (its \
                 10-crop and multi-scale ones stand beside the measured ones in the table)."
                .into(),
            Self::DepthError => "Final test error against depth: measured mean ± std over seeds \
                 (filled) and the paper's Table 6 (hollow)."
                .into(),
            Self::SkipSpan => "Final test error against the number of 3x3 convs a shortcut \
                 skips (mean ± std over seeds); two is the paper's unit."
                .into(),
        }
    }

    /// The figures the results of `experiment` support.
    pub fn for_results(experiment: &str, results: &Results) -> Vec<Self> {
        let mut kinds = Vec::new();
        if !results.curves.is_empty() {
            kinds.push(Self::Curves);
        }
        if !results.layers.is_empty() {
            kinds.push(Self::Responses);
        }
        let spans: Vec<u64> = distinct(results.runs.iter().map(|r| r.convs_per_unit));
        if spans.len() > 1 {
            kinds.push(Self::SkipSpan);
        } else if experiment != "fig1" && distinct(results.runs.iter().map(|r| r.depth)).len() > 1 {
            kinds.push(Self::DepthError);
        }
        kinds
    }

    fn size(self, panels: usize) -> (u32, u32) {
        match self {
            Self::Curves => (260 + 440 * panels as u32, 560),
            Self::Responses => (1100, 560),
            Self::DepthError | Self::SkipSpan => (760, 560),
        }
    }
}

fn distinct<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = values.collect();
    v.sort();
    v.dedup();
    v
}

/// A figure as written: both files, and the SVG's text for documents that embed it.
pub struct Drawn {
    pub png: PathBuf,
    pub svg: PathBuf,
    pub svg_text: String,
}

/// Draws `kind` as `<out>/<stem>.png` and `.svg`.
pub fn draw(kind: FigureKind, results: &Results, out: &Path) -> Result<Drawn, Error> {
    font::register();
    let spec = Spec::new(kind, results);
    let size = kind.size(spec.panels.len().max(1));
    let png = out.join(format!("{}.png", kind.stem()));
    let svg = out.join(format!("{}.svg", kind.stem()));
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| Error::Draw { path, message }
    };
    // plotters writes the file itself; render beside it and rename, so a reader never sees half.
    let png_tmp = out.join(format!(".{}.tmp.png", kind.stem()));
    {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        spec.render(&root).map_err(failed(&png))?;
        root.present().map_err(|e| failed(&png)(e.to_string()))?;
    }
    rename(&png_tmp, &png)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        spec.render(&root).map_err(failed(&svg))?;
        root.present().map_err(|e| failed(&svg)(e.to_string()))?;
    }
    files::write_atomic(&svg, text.as_bytes())?;
    Ok(Drawn {
        png,
        svg,
        svg_text: text,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::rename(from, to).map_err(|source| {
        Error::Write(files::Error {
            path: to.to_path_buf(),
            source,
        })
    })
}

/// The paper's names: `plain-20`, `ResNet-56`, and the ablation's `ResNet-20, 3-conv units`.
pub fn display_name(model: &str) -> String {
    let (base, span) = match model.split_once("-k") {
        Some((base, k)) => (base, Some(k)),
        None => (model, None),
    };
    let name = if let Some(depth) = base.strip_prefix("resnet") {
        // The paper's own spelling of the shortcut options: "ResNet-34 A".
        match depth.rsplit_once('-') {
            Some((depth, option)) if matches!(option, "a" | "b" | "c") => {
                format!("ResNet-{depth} {}", option.to_ascii_uppercase())
            }
            _ => format!("ResNet-{depth}"),
        }
    } else if let Some(depth) = base.strip_prefix("plain") {
        format!("plain-{depth}")
    } else {
        base.to_string()
    };
    match span {
        Some(k) => format!("{name}, {k}-conv units"),
        None => name,
    }
}

/// A qualitative palette that stays apart in print and for common colour blindness (Okabe-Ito).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Colours by (depth, convs per unit), so plain-20 and ResNet-20 share a colour as in the paper.
struct Colours(Vec<(u64, u64)>);

impl Colours {
    fn of(results: &Results) -> Self {
        Self(distinct(
            results.runs.iter().map(|r| (r.depth, r.convs_per_unit)),
        ))
    }
    fn get(&self, results: &Results, model: &str) -> RGBColor {
        let key = results
            .runs
            .iter()
            .find(|r| r.model == model)
            .map(|r| (r.depth, r.convs_per_unit));
        let i = key
            .and_then(|k| self.0.iter().position(|&c| c == k))
            .unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }
}

/// One line of a panel.
struct Line {
    colour: RGBColor,
    /// Thin and dashed (training error, plain nets in Fig. 7) or bold and solid.
    dashed: bool,
    /// Markers at the points (sparse test evaluations).
    markers: bool,
    points: Vec<(f64, f64)>,
}

/// A point with an error bar.
struct Mark {
    colour: RGBColor,
    filled: bool,
    x: f64,
    y: f64,
    /// Half-width of the bar; 0 or NaN draws none.
    spread: f64,
}

enum PanelBody {
    Lines(Vec<Line>),
    Marks(Vec<Mark>),
}

struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    /// Ticks at exactly these x values (depths, spans) instead of evenly spaced ones.
    x_ticks: Option<Vec<f64>>,
    /// How an x tick is labelled (the depth axis is ln(depth), labelled as the depth).
    x_label: fn(&f64) -> String,
    body: PanelBody,
}

/// A legend entry below the panels, so the legend never covers data.
struct Key {
    label: String,
    colour: RGBColor,
    dashed: bool,
    marker: Option<bool>,
}

struct Spec {
    panels: Vec<Panel>,
    keys: Vec<Key>,
}

/// Mean over seeds at each x where every seed has a value.
fn mean_over_seeds(points: &[(u64, u64, f64)]) -> Vec<(f64, f64)> {
    let seeds = distinct(points.iter().map(|p| p.0)).len();
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for &(_, x, y) in points {
        at.entry(x).or_default().push(y);
    }
    at.into_iter()
        .filter(|(_, ys)| ys.len() == seeds)
        .map(|(x, ys)| (x as f64, ys.iter().sum::<f64>() / ys.len() as f64))
        .collect()
}

/// The paper cuts CIFAR error axes at 20%; results above that (short runs) get an axis that
/// shows them, rounded up to a multiple of 10.
fn error_axis(max: f64) -> std::ops::Range<f64> {
    if max <= 20.0 {
        0.0..20.0
    } else {
        0.0..((max / 10.0).ceil() * 10.0).min(100.0)
    }
}

impl Spec {
    fn new(kind: FigureKind, results: &Results) -> Self {
        match kind {
            FigureKind::Curves => curves(results),
            FigureKind::Responses => responses(results),
            FigureKind::DepthError => depth_error(results),
            FigureKind::SkipSpan => skip_span(results),
        }
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(text)?;
        let (_, height) = root.dim_in_pixel();
        let key_rows = self.keys.len().div_ceil(4).max(1) as u32;
        let (plots, legend) = root.split_vertically(height - 16 - 26 * key_rows);
        let areas = plots.split_evenly((1, self.panels.len().max(1)));
        for (panel, area) in self.panels.iter().zip(&areas) {
            panel.render(area)?;
        }
        self.legend(&legend)
    }

    fn legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (width, _) = area.dim_in_pixel();
        let columns = self.keys.len().clamp(1, 4) as i32;
        let cell = width as i32 / columns;
        let style = (font::FAMILY, 15).into_font().color(&BLACK);
        for (i, key) in self.keys.iter().enumerate() {
            let (col, row) = (i as i32 % columns, i as i32 / columns);
            let (x, y) = (col * cell + 24, row * 26 + 14);
            let stroke = ShapeStyle::from(key.colour).stroke_width(if key.dashed { 1 } else { 3 });
            if key.dashed {
                area.draw(&DashedPathElement::new(
                    vec![(x, y), (x + 36, y)],
                    5,
                    3,
                    stroke,
                ))
                .map_err(text)?;
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + 36, y)], stroke))
                    .map_err(text)?;
            }
            if let Some(filled) = key.marker {
                let style = if filled { stroke.filled() } else { stroke };
                area.draw(&Circle::new((x + 18, y), 5, style))
                    .map_err(text)?;
            }
            area.draw(&Text::new(
                key.label.clone(),
                (x + 44, y - 9),
                style.clone(),
            ))
            .map_err(text)?;
        }
        Ok(())
    }
}

/// A linear f64 axis with ticks exactly at the given values. plotters' `with_key_points` does
/// the same but loses the axis' label formatting for f64, which the mesh needs.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

fn text<E: Display>(e: E) -> String {
    e.to_string()
}

/// A tick label without trailing zeros: 0.02, 20, 1.5.
fn tick(x: &f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Panel {
    fn render<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (font::FAMILY, 20))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(58);
        match &self.x_ticks {
            Some(ticks) => {
                let x = Ticked {
                    inner: self.x.clone().into(),
                    ticks: ticks.clone(),
                };
                let mut chart = builder
                    .build_cartesian_2d(x, self.y.clone())
                    .map_err(text)?;
                self.mesh(&mut chart)?;
                self.draw_body(&mut chart)
            }
            None => {
                let mut chart = builder
                    .build_cartesian_2d(self.x.clone(), self.y.clone())
                    .map_err(text)?;
                self.mesh(&mut chart)?;
                self.draw_body(&mut chart)
            }
        }
    }

    /// Axes with units and a faint grid at the labelled ticks only.
    fn mesh<DB: DrawingBackend, X>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    ) -> Result<(), String>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .axis_desc_style((font::FAMILY, 16))
            .label_style((font::FAMILY, 14))
            .x_label_formatter(&self.x_label)
            .y_label_formatter(&tick)
            .bold_line_style(BLACK.mix(0.08))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(text)
    }

    fn draw_body<DB: DrawingBackend, X>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    ) -> Result<(), String>
    where
        X: Ranged<ValueType = f64>,
    {
        let clip = |(x, y): (f64, f64)| (x, y.min(self.y.end));
        match &self.body {
            PanelBody::Lines(lines) => {
                for line in lines {
                    let points: Vec<(f64, f64)> = line.points.iter().copied().map(clip).collect();
                    if line.dashed {
                        let style = ShapeStyle::from(line.colour).stroke_width(1);
                        chart
                            .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                            .map_err(text)?;
                    } else {
                        let style = ShapeStyle::from(line.colour).stroke_width(3);
                        chart
                            .draw_series(LineSeries::new(points.clone(), style))
                            .map_err(text)?;
                    }
                    if line.markers {
                        let style = ShapeStyle::from(line.colour).filled();
                        chart
                            .draw_series(points.iter().map(|&p| Circle::new(p, 4, style)))
                            .map_err(text)?;
                    }
                }
            }
            PanelBody::Marks(marks) => {
                for mark in marks {
                    let style = ShapeStyle::from(mark.colour).stroke_width(2);
                    if mark.spread.is_finite() && mark.spread > 0.0 {
                        let (lo, hi) = (mark.y - mark.spread, (mark.y + mark.spread));
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(mark.x, lo), (mark.x, hi.min(self.y.end))],
                                style,
                            )))
                            .map_err(text)?;
                    }
                    let marker = if mark.filled { style.filled() } else { style };
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            clip((mark.x, mark.y)),
                            6,
                            marker,
                        )))
                        .map_err(text)?;
                }
            }
        }
        Ok(())
    }
}

/// Fig. 1 (training error | test error) for `fig1`; otherwise the paper's Fig. 6 split: plain
/// nets | residual nets | ResNet-110 against 1202 (when 1202 ran).
fn curves(results: &Results) -> Spec {
    let colours = Colours::of(results);
    let models = results.curve_models();
    let residual = |m: &str| results.runs.iter().any(|r| r.model == m && r.residual);
    let depth = |m: &str| {
        results
            .runs
            .iter()
            .find(|r| r.model == m)
            .map_or(0, |r| r.depth)
    };
    let series = |model: &str, test: bool| -> Vec<(f64, f64)> {
        let points: Vec<(u64, u64, f64)> = results
            .curves
            .iter()
            .filter(|c| c.model == model)
            .filter_map(|c| {
                let y = if test { c.test_error? } else { c.train_error };
                Some((c.seed, c.iteration, y))
            })
            .collect();
        mean_over_seeds(&points)
            .into_iter()
            .map(|(x, y)| (x / 1e4, y))
            .collect()
    };
    let lines_of = |group: &[String], train: bool, test: bool| -> Vec<Line> {
        let mut lines = Vec::new();
        for m in group {
            let colour = colours.get(results, m);
            if train {
                lines.push(Line {
                    colour,
                    dashed: true,
                    markers: false,
                    points: series(m, false),
                });
            }
            if test {
                let points = series(m, true);
                lines.push(Line {
                    colour,
                    dashed: false,
                    markers: points.len() <= 12,
                    points,
                });
            }
        }
        lines
    };
    let max_iteration = results
        .curves
        .iter()
        .map(|c| c.iteration)
        .max()
        .unwrap_or(1) as f64;
    let panel = |title: &str, lines: Vec<Line>| {
        let max = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        Panel {
            title: title.into(),
            x_desc: "iter. (1e4)".into(),
            y_desc: "error (%)".into(),
            x: 0.0..max_iteration / 1e4,
            y: error_axis(max),
            x_ticks: None,
            x_label: tick,
            body: PanelBody::Lines(lines),
        }
    };
    // The paper's ImageNet curves (Fig. 4) are of the center-crop validation error.
    let held_out = if results.dataset == "imagenet" {
        "val. error (center crop)"
    } else {
        "test error"
    };
    let is_fig1 = !models.is_empty() && models.iter().all(|m| !residual(m));
    let mut panels = Vec::new();
    if is_fig1 {
        panels.push(panel("training error", lines_of(&models, true, false)));
        panels.push(panel(held_out, lines_of(&models, false, true)));
    } else {
        let plain: Vec<String> = models.iter().filter(|m| !residual(m)).cloned().collect();
        let res: Vec<String> = models
            .iter()
            .filter(|m| residual(m) && depth(m) < 1202)
            .cloned()
            .collect();
        let deep: Vec<String> = models
            .iter()
            .filter(|m| residual(m) && (depth(m) == 110 || depth(m) == 1202))
            .cloned()
            .collect();
        if !plain.is_empty() {
            panels.push(panel("plain nets", lines_of(&plain, true, true)));
        }
        if !res.is_empty() {
            panels.push(panel("residual nets", lines_of(&res, true, true)));
        }
        if deep.iter().any(|m| depth(m) == 1202) {
            panels.push(panel("ResNet-110 and 1202", lines_of(&deep, true, true)));
        }
    }
    let mut keys: Vec<Key> = models
        .iter()
        .map(|m| Key {
            label: display_name(m),
            colour: colours.get(results, m),
            dashed: false,
            marker: None,
        })
        .collect();
    if !is_fig1 {
        keys.push(Key {
            label: "training error".into(),
            colour: BLACK,
            dashed: true,
            marker: None,
        });
        keys.push(Key {
            label: held_out.into(),
            colour: BLACK,
            dashed: false,
            marker: None,
        });
    }
    Spec { panels, keys }
}

/// Fig. 7: per-layer response std (mean over seeds), by layer index and sorted descending.
fn responses(results: &Results) -> Spec {
    let colours = Colours::of(results);
    let models = distinct_in_order(results.layers.iter().map(|l| l.model.clone()));
    let residual = |m: &str| results.runs.iter().any(|r| r.model == m && r.residual);
    let by_layer = |model: &str| -> Vec<(f64, f64)> {
        let points: Vec<(u64, u64, f64)> = results
            .layers
            .iter()
            .filter(|l| l.model == model)
            .map(|l| (l.seed, l.layer, l.std))
            .collect();
        mean_over_seeds(&points)
    };
    let mut layer_lines = Vec::new();
    let mut sorted_lines = Vec::new();
    let mut max = 0.0f64;
    let mut layers = 1.0f64;
    for m in &models {
        let points = by_layer(m);
        let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
        values.sort_by(|a, b| b.total_cmp(a));
        max = values.first().copied().unwrap_or(0.0).max(max);
        layers = layers.max(values.len() as f64);
        let line = |points| Line {
            colour: colours.get(results, m),
            dashed: !residual(m),
            markers: false,
            points,
        };
        sorted_lines.push(line(
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| ((i + 1) as f64, v))
                .collect(),
        ));
        layer_lines.push(line(points));
    }
    let panel = |title: &str, x_desc: &str, lines| Panel {
        title: title.into(),
        x_desc: x_desc.into(),
        y_desc: "std".into(),
        x: 0.0..layers + 1.0,
        y: 0.0..(max * 1.1).max(0.1),
        x_ticks: None,
        x_label: tick,
        body: PanelBody::Lines(lines),
    };
    let keys = models
        .iter()
        .map(|m| Key {
            label: display_name(m),
            colour: colours.get(results, m),
            dashed: !residual(m),
            marker: None,
        })
        .collect();
    Spec {
        panels: vec![
            panel("by layer", "layer index (original)", layer_lines),
            panel("sorted by magnitude", "layer index (sorted)", sorted_lines),
        ],
        keys,
    }
}

/// Final test error against depth (log axis): plain and residual nets measured, Table 6's
/// ResNets beside them.
fn depth_error(results: &Results) -> Spec {
    let plain_colour = PALETTE[1];
    let res_colour = PALETTE[0];
    let mut marks = Vec::new();
    let mut max = 0.0f64;
    let mut depths = Vec::new();
    for s in &results.summary {
        let colour = if s.residual { res_colour } else { plain_colour };
        depths.push(s.depth as f64);
        // Plain and residual nets of one depth side by side, so equal errors stay visible.
        let x = (s.depth as f64).ln() + if s.residual { 0.02 } else { -0.02 };
        max = max.max(s.test_error_mean + s.test_error_std.max(0.0));
        marks.push(Mark {
            colour,
            filled: true,
            x,
            y: s.test_error_mean,
            spread: s.test_error_std,
        });
        // Table 6 gives ResNet-110 as mean ± std (and its best run); the mean is the comparison.
        if let Some(paper) = s.paper_error_mean.or(s.paper_error) {
            max = max.max(paper);
            marks.push(Mark {
                colour,
                filled: false,
                x,
                y: paper,
                spread: s.paper_error_std.unwrap_or(0.0),
            });
        }
    }
    depths.sort_by(f64::total_cmp);
    depths.dedup();
    let lo = depths.first().copied().unwrap_or(20.0).min(20.0);
    let hi = depths.last().copied().unwrap_or(56.0).max(56.0);
    // A log axis drawn as a linear one over ln(depth), with a tick at each depth that ran.
    let panel = Panel {
        title: "final test error against depth".into(),
        x_desc: "depth (layers, log scale)".into(),
        y_desc: "test error (%)".into(),
        x: (lo * 0.8).ln()..(hi * 1.25).ln(),
        y: error_axis(max),
        x_ticks: Some(depths.iter().map(|d| d.ln()).collect()),
        x_label: |x| format!("{:.0}", x.exp()),
        body: PanelBody::Marks(marks),
    };
    let keys = vec![
        Key {
            label: "plain, measured".into(),
            colour: plain_colour,
            dashed: false,
            marker: Some(true),
        },
        Key {
            label: "ResNet, measured".into(),
            colour: res_colour,
            dashed: false,
            marker: Some(true),
        },
        Key {
            label: "ResNet, Table 6".into(),
            colour: res_colour,
            dashed: false,
            marker: Some(false),
        },
    ];
    Spec {
        panels: vec![panel],
        keys,
    }
}

/// The ablation: final test error (mean ± std over seeds) against convs per unit, one colour per
/// depth.
fn skip_span(results: &Results) -> Spec {
    let depths = distinct(results.runs.iter().map(|r| r.depth));
    let mut marks = Vec::new();
    let mut max = 0.0f64;
    let mut keys = Vec::new();
    for (i, &depth) in depths.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        keys.push(Key {
            label: format!("{depth} layers"),
            colour,
            dashed: false,
            marker: Some(true),
        });
        for k in distinct(results.runs.iter().map(|r| r.convs_per_unit)) {
            let errors: Vec<f64> = results
                .runs
                .iter()
                .filter(|r| r.depth == depth && r.convs_per_unit == k)
                .map(|r| r.final_test_error)
                .collect();
            if errors.is_empty() {
                continue;
            }
            let (mean, sd) = experiments::sweep::tables::mean_std(&errors);
            max = max.max(mean + sd.max(0.0));
            // Depths side by side at each span, so their bars do not overlap.
            let offset = (i as f64 - (depths.len() as f64 - 1.0) / 2.0) * 0.08;
            marks.push(Mark {
                colour,
                filled: true,
                x: k as f64 + offset,
                y: mean,
                spread: sd,
            });
        }
    }
    let panel = Panel {
        title: "how many convs should a shortcut skip?".into(),
        x_desc: "3x3 convs per residual unit".into(),
        y_desc: "test error (%)".into(),
        x: 0.5..3.5,
        y: error_axis(max),
        x_ticks: Some(vec![1.0, 2.0, 3.0]),
        x_label: tick,
        body: PanelBody::Marks(marks),
    };
    Spec {
        panels: vec![panel],
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_paper() {
        assert_eq!(display_name("plain56"), "plain-56");
        assert_eq!(display_name("resnet110"), "ResNet-110");
        assert_eq!(display_name("resnet20-k3"), "ResNet-20, 3-conv units");
        assert_eq!(display_name("resnet34-c"), "ResNet-34 C");
        assert_eq!(display_name("resnet152"), "ResNet-152");
    }

    #[test]
    fn error_axes_cut_at_twenty_like_the_paper_unless_the_data_are_above() {
        assert_eq!(error_axis(12.0), 0.0..20.0);
        assert_eq!(error_axis(56.3), 0.0..60.0);
        assert_eq!(error_axis(130.0), 0.0..100.0);
    }

    #[test]
    fn seeds_are_averaged_where_all_of_them_have_a_point() {
        let points = [(0, 100, 50.0), (1, 100, 40.0), (0, 200, 30.0)];
        assert_eq!(mean_over_seeds(&points), vec![(100.0, 45.0)]);
    }
}

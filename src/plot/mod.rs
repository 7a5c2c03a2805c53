//! Figures with plotters: panels of line and scatter series, written as PNG or SVG (by the
//! file extension), atomically (temporary name, then rename). The font ships with the crate
//! (DejaVu Sans), so no system font library is needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

mod dataset;
pub use dataset::dataset_preview;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The font is valid TrueType; failure would be a packaging bug.
            if plotters::style::register_font("sans-serif", style, bytes).is_err() {
                panic!("the bundled font could not be loaded");
            }
        }
    });
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// Points.
    Points,
}

/// One series of a panel.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label (empty: no legend entry).
    pub label: String,
    /// x values.
    pub xs: Vec<f64>,
    /// y values (same length as `xs`).
    pub ys: Vec<f64>,
    /// Palette index.
    pub color: usize,
    /// Line, dashed line or points.
    pub mark: Mark,
}

impl Series {
    /// A solid line.
    pub fn line(label: impl Into<String>, xs: Vec<f64>, ys: Vec<f64>, color: usize) -> Self {
        Self { label: label.into(), xs, ys, color, mark: Mark::Line }
    }
    /// A dashed line.
    pub fn dashed(label: impl Into<String>, xs: Vec<f64>, ys: Vec<f64>, color: usize) -> Self {
        Self { label: label.into(), xs, ys, color, mark: Mark::Dashed }
    }
    /// Points.
    pub fn points(label: impl Into<String>, xs: Vec<f64>, ys: Vec<f64>, color: usize) -> Self {
        Self { label: label.into(), xs, ys, color, mark: Mark::Points }
    }
}

/// One panel (axes) of a figure.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    /// Title above the axes.
    pub title: String,
    /// x-axis label.
    pub xlabel: String,
    /// y-axis label.
    pub ylabel: String,
    /// The series.
    pub series: Vec<Series>,
    /// Logarithmic y axis.
    pub log_y: bool,
}

/// Colour `i` of a colour-blind-safe palette (Okabe–Ito).
pub fn color(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 8] = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0), (240, 228, 66)];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Plot(format!("{e:?}"))
}

fn bounds(panel: &Panel) -> Result<((f64, f64), (f64, f64))> {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = (f64::INFINITY, f64::NEG_INFINITY);
    for s in &panel.series {
        if s.xs.len() != s.ys.len() {
            return Err(Error::Plot(format!("series `{}`: {} x values but {} y values", s.label, s.xs.len(), s.ys.len())));
        }
        for (&a, &b) in s.xs.iter().zip(&s.ys) {
            if !a.is_finite() || !b.is_finite() || (panel.log_y && b <= 0.0) {
                continue;
            }
            x = (x.0.min(a), x.1.max(a));
            y = (y.0.min(b), y.1.max(b));
        }
    }
    if !x.0.is_finite() {
        return Err(Error::Plot(format!("panel `{}` has no finite data", panel.title)));
    }
    let pad = |(lo, hi): (f64, f64), log: bool| -> (f64, f64) {
        if log {
            (lo / 1.5, hi * 1.5)
        } else if hi > lo {
            let d = 0.05 * (hi - lo);
            (lo - d, hi + d)
        } else {
            (lo - 1.0, hi + 1.0)
        }
    };
    Ok((pad(x, false), pad(y, panel.log_y)))
}

/// A compact tick label: `200` not `200.0`, `1e-7` not `0.0000001` (plotters' default
/// prints long decimals that overflow the label area on log axes).
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = bounds(panel)?;
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, ("sans-serif", 20)).margin(10).x_label_area_size(40).y_label_area_size(60);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.xlabel.as_str())
                .y_desc(panel.ylabel.as_str())
                .label_style(("sans-serif", 14))
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .draw()
                .map_err(plot_err)?;
            let mut any_label = false;
            for s in &panel.series {
                let c = color(s.color);
                let pts: Vec<(f64, f64)> =
                    s.xs.iter().copied().zip(s.ys.iter().copied()).filter(|(a, b)| a.is_finite() && b.is_finite() && (!panel.log_y || *b > 0.0)).collect();
                let anno = match s.mark {
                    Mark::Line => chart.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(plot_err)?,
                    Mark::Dashed => chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2))).map_err(plot_err)?,
                    Mark::Points => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.filled()))).map_err(plot_err)?,
                };
                if !s.label.is_empty() {
                    any_label = true;
                    if s.mark == Mark::Points {
                        anno.label(s.label.as_str()).legend(move |(x, y)| Circle::new((x + 9, y), 3, c.filled()));
                    } else {
                        anno.label(s.label.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                    }
                }
            }
            if any_label {
                chart
                    .configure_series_labels()
                    .label_font(("sans-serif", 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(plot_err)?;
            }
        }};
    }
    if panel.log_y {
        body!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(plot_err)?);
    } else {
        body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(plot_err)?);
    }
    Ok(())
}

/// The cells of a figure: panels or heatmaps, each drawn in one 480×360 px cell.
trait Cells {
    fn count(&self) -> usize;
    fn draw<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

impl Cells for [Panel] {
    fn count(&self) -> usize {
        self.len()
    }
    fn draw<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        draw_panel(area, &self[i])
    }
}

fn render<DB: DrawingBackend, C: Cells + ?Sized>(root: DrawingArea<DB, Shift>, cells: &C, cols: usize) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let rows = cells.count().div_ceil(cols);
    for (i, area) in root.split_evenly((rows, cols)).iter().enumerate().take(cells.count()) {
        cells.draw(i, area)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Draws `cells` on a grid with `cols` columns and writes `path` (`.png` or `.svg`):
/// drawn under the atomic-write temporary name ([`crate::train::temp_path`], which keeps the
/// extension the bitmap encoder picks the format from), then renamed.
fn save_cells<C: Cells + ?Sized>(path: &Path, cells: &C, cols: usize) -> Result<()> {
    register_font();
    if cells.count() == 0 || cols == 0 {
        return Err(Error::Plot("a figure needs at least one panel and one column".into()));
    }
    let rows = cells.count().div_ceil(cols);
    let size = (480 * cols as u32, 360 * rows as u32);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "png" && ext != "svg" {
        return Err(Error::Plot(format!("unknown figure format `{ext}` (use .png or .svg)")));
    }
    let tmp = crate::train::temp_path(path)?;
    if ext == "png" {
        render(BitMapBackend::new(&tmp, size).into_drawing_area(), cells, cols)?;
    } else {
        render(SVGBackend::new(&tmp, size).into_drawing_area(), cells, cols)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Draw `panels` on a grid with `cols` columns (each panel 480×360 px) and write it to `path`
/// (`.png` or `.svg`), atomically.
///
/// # Errors
/// `Plot` for an unknown extension, empty panels or mismatched series; `Io` when the file
/// cannot be written.
pub fn save_figure(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    save_cells(path, panels, cols)
}

/// A field on a tensor grid for [`save_heatmaps`]: `values[j * xs.len() + i]` is the
/// value at `(xs[i], ys[j])` (row-major with y slowest), cell centres.
#[derive(Clone, Debug, Default)]
pub struct Heatmap {
    /// Title above the axes (the colour range is appended).
    pub title: String,
    /// x-axis label.
    pub xlabel: String,
    /// y-axis label.
    pub ylabel: String,
    /// Cell centres along x, increasing.
    pub xs: Vec<f64>,
    /// Cell centres along y, increasing.
    pub ys: Vec<f64>,
    /// `[ys.len() * xs.len()]`.
    pub values: Vec<f64>,
}

/// Viridis at `s ∈ [0, 1]` (piecewise linear through 6 stops of matplotlib's table).
fn viridis(s: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 6] =
        [(68.0, 1.0, 84.0), (65.0, 68.0, 135.0), (42.0, 120.0, 142.0), (34.0, 168.0, 132.0), (122.0, 209.0, 81.0), (253.0, 231.0, 37.0)];
    let s = if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let k = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - k as f64;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let mix = |p: f64, q: f64| (p + f * (q - p)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn cell_edges(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    if n == 1 {
        return vec![c[0] - 0.5, c[0] + 0.5];
    }
    let mut e = Vec::with_capacity(n + 1);
    e.push(c[0] - 0.5 * (c[1] - c[0]));
    e.extend(c.windows(2).map(|w| 0.5 * (w[0] + w[1])));
    e.push(c[n - 1] + 0.5 * (c[n - 1] - c[n - 2]));
    e
}

fn draw_heatmap<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, h: &Heatmap) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (nx, ny) = (h.xs.len(), h.ys.len());
    if nx == 0 || ny == 0 || h.values.len() != nx * ny {
        return Err(Error::Plot(format!("heatmap `{}`: {} values for a {nx} × {ny} grid", h.title, h.values.len())));
    }
    let finite = h.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return Err(Error::Plot(format!("heatmap `{}` has no finite values", h.title)));
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (ex, ey) = (cell_edges(&h.xs), cell_edges(&h.ys));
    let title = format!("{}  [{lo:.4e}, {hi:.4e}]", h.title);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(ex[0]..ex[nx], ey[0]..ey[ny])
        .map_err(plot_err)?;
    chart.configure_mesh().disable_mesh().x_desc(h.xlabel.as_str()).y_desc(h.ylabel.as_str()).x_labels(6).y_labels(6).draw().map_err(plot_err)?;
    chart
        .draw_series((0..ny).flat_map(|j| (0..nx).map(move |i| (i, j))).map(|(i, j)| {
            let c = viridis((h.values[j * nx + i] - lo) / span);
            Rectangle::new([(ex[i], ey[j]), (ex[i + 1], ey[j + 1])], c.filled())
        }))
        .map_err(plot_err)?;
    Ok(())
}

impl Cells for [Heatmap] {
    fn count(&self) -> usize {
        self.len()
    }
    fn draw<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        draw_heatmap(area, &self[i])
    }
}

/// Draws `maps` on a grid with `cols` columns (each 480×360 px, viridis, each map
/// scaled to its own range, printed in its title) and writes `path` (`.png`/`.svg`) atomically.
pub fn save_heatmaps(path: &Path, maps: &[Heatmap], cols: usize) -> Result<()> {
    save_cells(path, maps, cols)
}

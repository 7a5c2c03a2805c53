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

/// The corner for the legend that hides the least of the data: the share of each series'
/// points and line segments (sampled along the segment) that falls under a legend box of
/// the labels' size, in axis-fraction coordinates of a 480 × 360 panel (log-aware in y).
/// Ties keep the upper right, plotters' default. `None` when every corner would hide some:
/// the legend then goes below the axes ([`draw_panel`]).
fn legend_corner(panel: &Panel, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> Option<SeriesLabelPosition> {
    let labels: Vec<&str> = panel.series.iter().filter(|s| !s.label.is_empty()).map(|s| s.label.as_str()).collect();
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // Plot area of a panel ≈ 400 × 260 px; a label line ≈ 18 px, a character ≈ 7 px, the
    // key and margins ≈ 40 px.
    let w = ((7 * chars + 40) as f64 / 400.0).min(0.95);
    let h = ((18 * labels.len() + 10) as f64 / 260.0).min(0.95);
    let fy = |y: f64| if panel.log_y { (y.ln() - y0.ln()) / (y1.ln() - y0.ln()) } else { (y - y0) / (y1 - y0) };
    let fx = |x: f64| (x - x0) / (x1 - x0);
    let corners = [
        (SeriesLabelPosition::UpperRight, (1.0 - w, 1.0), (1.0 - h, 1.0)),
        (SeriesLabelPosition::UpperLeft, (0.0, w), (1.0 - h, 1.0)),
        (SeriesLabelPosition::LowerRight, (1.0 - w, 1.0), (0.0, h)),
        (SeriesLabelPosition::LowerLeft, (0.0, w), (0.0, h)),
    ];
    let mut hidden = [0usize; 4];
    for s in &panel.series {
        let pts: Vec<(f64, f64)> =
            s.xs.iter().zip(&s.ys).filter(|(a, b)| a.is_finite() && b.is_finite() && (!panel.log_y || **b > 0.0)).map(|(a, b)| (fx(*a), fy(*b))).collect();
        let mut count = |(px, py): (f64, f64)| {
            for (k, (_, (xa, xb), (ya, yb))) in corners.iter().enumerate() {
                if (*xa..=*xb).contains(&px) && (*ya..=*yb).contains(&py) {
                    hidden[k] += 1;
                }
            }
        };
        if s.mark == Mark::Points {
            pts.iter().for_each(|&p| count(p));
        } else {
            for pair in pts.windows(2) {
                let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                for i in 0..16 {
                    let f = i as f64 / 16.0;
                    count((ax + f * (bx - ax), ay + f * (by - ay)));
                }
            }
            pts.last().into_iter().for_each(|&p| count(p));
        }
    }
    let best = (0..4).min_by_key(|&k| hidden[k]).unwrap_or(0);
    (hidden[best] == 0).then(|| corners[best].0.clone())
}

/// Legend entries below the axes, in two columns, in the series' order.
fn draw_legend_below<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let col_w = (w as i32 - 70) / 2;
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, s) in panel.series.iter().filter(|s| !s.label.is_empty()).enumerate() {
        let (x, y) = (70 + (i as i32 % 2) * col_w, 8 + (i as i32 / 2) * LEGEND_ROW);
        let c = color(s.color);
        match s.mark {
            Mark::Points => area.draw(&Circle::new((x + 9, y), 3, c.filled())).map_err(plot_err)?,
            _ => area.draw(&PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))).map_err(plot_err)?,
        }
        area.draw(&Text::new(s.label.as_str(), (x + 24, y - 7), font.clone())).map_err(plot_err)?;
    }
    Ok(())
}

/// Height of one row of the legend below the axes, pixels.
const LEGEND_ROW: i32 = 17;

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = bounds(panel)?;
    let labels = panel.series.iter().filter(|s| !s.label.is_empty()).count();
    let inside = legend_corner(panel, (x0, x1), (y0, y1));
    let (chart_area, below) = if labels > 0 && inside.is_none() {
        let (_, h) = area.dim_in_pixel();
        let legend_h = LEGEND_ROW * labels.div_ceil(2) as i32 + 6;
        let (a, b) = area.split_vertically(h as i32 - legend_h);
        (a, Some(b))
    } else {
        (area.clone(), None)
    };
    if let Some(b) = &below {
        draw_legend_below(b, panel)?;
    }
    let mut builder = ChartBuilder::on(&chart_area);
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
            if let (true, Some(corner)) = (any_label, inside.clone()) {
                chart
                    .configure_series_labels()
                    .position(corner)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn corner(series: Vec<Series>, log_y: bool) -> Option<SeriesLabelPosition> {
        let panel = Panel { series, log_y, ..Panel::default() };
        let (x, y) = bounds(&panel).unwrap();
        legend_corner(&panel, x, y)
    }

    fn name(p: Option<SeriesLabelPosition>) -> &'static str {
        match p {
            Some(SeriesLabelPosition::UpperRight) => "upper right",
            Some(SeriesLabelPosition::UpperLeft) => "upper left",
            Some(SeriesLabelPosition::LowerRight) => "lower right",
            Some(SeriesLabelPosition::LowerLeft) => "lower left",
            Some(_) => "other",
            None => "below",
        }
    }

    /// The legend goes to the corner the curves leave free: a falling curve from the upper
    /// left to the lower right leaves the upper right and lower left; a rising one the upper
    /// left; a curve along the top (on a log axis) the lower corners.
    #[test]
    fn legend_avoids_the_data() {
        let xs: Vec<f64> = (0..20).map(f64::from).collect();
        let falling = Series::line("falling", xs.clone(), xs.iter().map(|x| 20.0 - x).collect(), 0);
        assert_eq!(name(corner(vec![falling], false)), "upper right");
        let rising = Series::line("rising", xs.clone(), xs.clone(), 0);
        assert_eq!(name(corner(vec![rising], false)), "upper left");
        // Flat at the top, then a drop at the very end: the upper corners are taken.
        let top: Vec<f64> = xs.iter().map(|&x| if x < 19.0 { 1.0 } else { 1e-3 }).collect();
        let high = Series::line("high", xs.clone(), top.clone(), 0);
        let low = Series::points("low", xs.clone(), top.iter().map(|v| v * 0.9).collect(), 1);
        assert_eq!(name(corner(vec![high, low], true)), "lower left");
        // Curves through every corner: the legend goes below the axes.
        let x_shape = vec![Series::line("rising", xs.clone(), xs.clone(), 0), Series::line("falling", xs.clone(), xs.iter().map(|x| 19.0 - x).collect(), 1)];
        assert_eq!(name(corner(x_shape.clone(), false)), "below");
        // And the figure is drawn that way, to an SVG that names both series.
        let dir = std::env::temp_dir().join(format!("physflow-legend-{}", std::process::id()));
        let path = dir.join("x.svg");
        save_figure(&path, &[Panel { title: "x".into(), series: x_shape, ..Panel::default() }], 1).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("rising") && svg.contains("falling"), "legend entries missing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

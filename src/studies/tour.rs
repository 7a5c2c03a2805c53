//! `physflow demo`: a short tour of every pillar through the study table — a neural ODE
//! trained with the adjoint, a stiff system's parameters fitted with diffsol's adjoint
//! sensitivities, a neural SDE, a Boltzmann generator, flow matching and a constrained PDE
//! sample — at sizes that run in about three minutes on two cores, then one index page
//! (`index.md` and `index.html` in the output root) with each figure and its numbers.
//!
//! The tour's sections are the studies' own configurations with smaller defaults; a
//! `--config` file sets any of their keys (`[ode]`, `[stiff]`, `[sde]`, `[bg]`, `[fm]`,
//! `[pde]`), merged key by key like every study's file. Each full study is its own
//! subcommand (`physflow ode`, `physflow fit`, …).

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bg_double_well::{BgDoubleWellConfig, BgDoubleWellStudy};
use super::fm_moons::{FmMoonsConfig, FmMoonsStudy};
use super::neural_ode::{NeuralOdeConfig, NeuralOdeStudy};
use super::neural_sde::{NeuralSdeConfig, NeuralSdeStudy};
use super::param_fit::{ParamFitConfig, ParamFitStudy};
use super::pde_fields::{PdeFieldsStudy, PdeProblem, PdeStudyConfig};
use super::registry::{configure, finish, Context, Outcome, Overrides, Study};
use crate::train::write_atomic;
use crate::Result;

/// The tour: one section per pillar, each a study configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TourConfig {
    /// Neural ODE (`physflow ode`).
    pub ode: NeuralOdeConfig,
    /// Stiff system with adjoint sensitivities (`physflow fit`).
    pub stiff: ParamFitConfig,
    /// Neural SDE (`physflow sde`).
    pub sde: NeuralSdeConfig,
    /// Boltzmann generator (`physflow bg double-well`).
    pub bg: BgDoubleWellConfig,
    /// Flow matching (`physflow fm moons`).
    pub fm: FmMoonsConfig,
    /// Constrained PDE fields (`physflow pde heat`).
    pub pde: PdeStudyConfig,
}

impl Default for TourConfig {
    /// The studies' defaults, with fewer training steps for the Boltzmann generator, flow
    /// matching and the PDE fields, and fewer PDE samples (2 conditions × 16 fields, 50 steps),
    /// so the tour runs in about three minutes on two cores after the build (measured: 2 min
    /// 39 s on this project's 2-core machine, 2026-12-07, of which the PDE stop took 96 s).
    fn default() -> Self {
        let mut bg = BgDoubleWellConfig::default();
        bg.train.steps = 1500;
        let fm = FmMoonsConfig { steps: 2000, ..FmMoonsConfig::default() };
        let mut pde = PdeStudyConfig { conditions: 2, ensemble: 16, sample_steps: 50, nfes: vec![], ..PdeStudyConfig::for_problem(PdeProblem::Heat) };
        pde.train.run.steps = 600;
        TourConfig { ode: NeuralOdeConfig::default(), stiff: ParamFitConfig::default(), sde: NeuralSdeConfig::default(), bg, fm, pde }
    }
}

/// One stop of the tour.
#[derive(Clone, Debug)]
pub struct Stop {
    /// The pillar (`"Neural ODE"`).
    pub pillar: &'static str,
    /// The subcommand of the full study.
    pub command: &'static str,
    /// What the run left: its numbers and files.
    pub outcome: Outcome,
    /// Wall-clock seconds of the stop.
    pub seconds: f64,
}

/// The tour's stops and its index pages.
#[derive(Clone, Debug)]
pub struct TourReport {
    /// The stops in order.
    pub stops: Vec<Stop>,
    /// `index.md` and `index.html` in the output root.
    pub files: Vec<String>,
}

fn stop<S: Study>(pillar: &'static str, command: &'static str, cfg: &S::Config, o: &Overrides, ctx: &Context, stops: &mut Vec<Stop>) -> Result<()> {
    let clock = Instant::now();
    // The section is already merged from the file; only `--seed` and `--steps` remain.
    let flags = Overrides { config: None, ..o.clone() };
    let outcome = finish::<S>(configure::<S>(cfg.clone(), &flags)?, ctx)?;
    if !ctx.quiet {
        eprintln!("[demo] {pillar}: {:.1} s", clock.elapsed().as_secs_f64());
    }
    stops.push(Stop { pillar, command, outcome, seconds: clock.elapsed().as_secs_f64() });
    Ok(())
}

/// Runs the tour: `o`'s table merged over [`TourConfig::default`], `--seed` and `--steps`
/// applied to every stop, then the index pages.
///
/// # Errors
/// `Format` for a bad file, `InvalidArgument` for `--system`/`--method`, and the first failing
/// stop's error.
pub fn run(o: &Overrides, ctx: &Context) -> Result<TourReport> {
    super::registry::refuse_particle_flags(o)?;
    let cfg: TourConfig = match &o.config {
        None => TourConfig::default(),
        Some((table, origin)) => super::config::merge_over(TourConfig::default(), table.clone(), origin)?,
    };
    let mut stops = Vec::new();
    stop::<NeuralOdeStudy>("Neural ODE", "physflow ode", &cfg.ode, o, ctx, &mut stops)?;
    stop::<ParamFitStudy>("Stiff system with adjoint sensitivities", "physflow fit", &cfg.stiff, o, ctx, &mut stops)?;
    stop::<NeuralSdeStudy>("Neural SDE", "physflow sde", &cfg.sde, o, ctx, &mut stops)?;
    stop::<BgDoubleWellStudy>("Boltzmann generator", "physflow bg double-well", &cfg.bg, o, ctx, &mut stops)?;
    stop::<FmMoonsStudy>("Flow matching", "physflow fm moons", &cfg.fm, o, ctx, &mut stops)?;
    stop::<PdeFieldsStudy>("Constrained PDE fields", "physflow pde heat", &cfg.pde, o, ctx, &mut stops)?;
    let md = ctx.out.join("index.md");
    let html = ctx.out.join("index.html");
    write_atomic(&md, markdown(&stops, ctx.out).as_bytes())?;
    write_atomic(&html, html_page(&stops, ctx.out).as_bytes())?;
    Ok(TourReport { stops, files: vec![md.display().to_string(), html.display().to_string()] })
}

fn is_figure(f: &str) -> bool {
    f.ends_with(".png") || f.ends_with(".svg")
}

/// `file` relative to the output root, where the index pages are.
fn relative(file: &str, root: &Path) -> String {
    Path::new(file).strip_prefix(root).map(|p| p.display().to_string()).unwrap_or_else(|_| file.to_string())
}

/// The Markdown index: per stop, the full study's command, its numbers and its figures.
pub fn markdown(stops: &[Stop], root: &Path) -> String {
    let total: f64 = stops.iter().map(|s| s.seconds).sum();
    let mut s = format!(
        "# physflow demo\n\nOne short run of each pillar at tour size ({total:.0} s in all); each full study is the command named in its \
         section. Numbers are from this run.\n\n"
    );
    for (i, st) in stops.iter().enumerate() {
        s += &format!("## {}. {} — `{}`\n\n{:.1} s\n\n```text\n{}\n```\n\n", i + 1, st.pillar, st.command, st.seconds, st.outcome.summary.trim_end());
        for f in st.outcome.files.iter().filter(|f| is_figure(f)) {
            let rel = relative(f, root);
            s += &format!("![{rel}]({rel})\n\n");
        }
        let others: Vec<String> = st.outcome.files.iter().filter(|f| !is_figure(f)).map(|f| format!("[{0}]({0})", relative(f, root))).collect();
        if !others.is_empty() {
            s += &format!("Files: {}\n\n", others.join(", "));
        }
    }
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The same index as one HTML page.
pub fn html_page(stops: &[Stop], root: &Path) -> String {
    let total: f64 = stops.iter().map(|s| s.seconds).sum();
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>physflow demo</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}\
         img{{max-width:100%}}pre{{background:#f4f4f4;padding:8px;overflow-x:auto}}</style></head><body>\n<h1>physflow demo</h1>\n<p>One short run of each \
         pillar at tour size ({total:.0} s in all); each full study is the command named in its section. Numbers are from this run.</p>\n"
    );
    for (i, st) in stops.iter().enumerate() {
        s += &format!(
            "<h2>{}. {} — <code>{}</code></h2>\n<p>{:.1} s</p>\n<pre>{}</pre>\n",
            i + 1,
            escape(st.pillar),
            escape(st.command),
            st.seconds,
            escape(st.outcome.summary.trim_end())
        );
        for f in st.outcome.files.iter().filter(|f| is_figure(f)) {
            let rel = escape(&relative(f, root));
            s += &format!("<p><img src=\"{rel}\" alt=\"{rel}\"></p>\n");
        }
        let others: Vec<String> =
            st.outcome.files.iter().filter(|f| !is_figure(f)).map(|f| escape(&relative(f, root))).map(|r| format!("<a href=\"{r}\">{r}</a>")).collect();
        if !others.is_empty() {
            s += &format!("<p>Files: {}</p>\n", others.join(", "));
        }
    }
    s + "</body></html>\n"
}

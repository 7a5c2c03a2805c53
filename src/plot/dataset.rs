//! The preview figure of a generated dataset (`physflow simulate --format h5` writes it as
//! `preview.png` beside the manifest).

use std::path::Path;

use super::{save_figure, save_heatmaps, Heatmap, Panel, Series};
use crate::io::dataset::Manifest;
use crate::io::h5::H5File;
use crate::{Error, Result};

/// A figure of the first (up to 4) samples of shard 0: space–time maps of 1D
/// fields (x across, t up), the final time of 2D fields, or every state
/// component against time for systems without a grid.
pub fn dataset_preview(dir: &Path, m: &Manifest, path: &Path) -> Result<()> {
    let shard = m.shards.first().ok_or_else(|| Error::Manifest { manifest: dir.join("manifest.json").display().to_string(), reason: "no shards".into() })?;
    let f = H5File::open(&dir.join(&shard.file))?;
    let k = shard.samples.min(4);
    let (shape, v) = f.read_f32_rows(&m.dataset, 0, k)?;
    let coord = |name: &str, n: usize| -> Vec<f64> {
        f.read_f64(name).map(|(_, c)| c).ok().filter(|c| c.len() == n).unwrap_or_else(|| (0..n).map(|i| i as f64).collect())
    };
    let per: usize = shape[1..].iter().product();
    let sample = |s: usize| v[s * per..(s + 1) * per].iter().map(|&x| f64::from(x));
    let system = m.spec.as_ref().map(|s| s.system.clone()).unwrap_or_default();
    let t = coord("t-coordinate", shape[1]);
    match shape.len() {
        3 if f.has_dataset("x-coordinate") => {
            let x = coord("x-coordinate", shape[2]);
            let maps = (0..k)
                .map(|s| Heatmap {
                    title: format!("{system} sample {}: {}(x, t)", shard.first_sample + s, m.dataset),
                    xlabel: "x".into(),
                    ylabel: "t".into(),
                    xs: x.clone(),
                    ys: t.clone(),
                    values: sample(s).collect(),
                })
                .collect::<Vec<_>>();
            save_heatmaps(path, &maps, 2)
        }
        3 => {
            let d = shape[2];
            let panels = (0..k)
                .map(|s| {
                    let vals: Vec<f64> = sample(s).collect();
                    let series = (0..d.min(8)).map(|c| Series::line(format!("y{c}"), t.clone(), (0..shape[1]).map(|i| vals[i * d + c]).collect(), c)).collect();
                    Panel { title: format!("{system} sample {}", shard.first_sample + s), xlabel: "t".into(), ylabel: "state".into(), series, log_y: false }
                })
                .collect::<Vec<_>>();
            save_figure(path, &panels, 2)
        }
        4 => {
            let (nx, ny) = (shape[2], shape[3]);
            let (x, y) = (coord("x-coordinate", nx), coord("y-coordinate", ny));
            let last = (shape[1] - 1) * nx * ny;
            let maps = (0..k)
                .map(|s| {
                    let vals: Vec<f64> = sample(s).skip(last).collect();
                    let values = (0..ny).flat_map(|j| (0..nx).map(move |i| (i, j))).map(|(i, j)| vals[i * ny + j]).collect();
                    Heatmap {
                        title: format!("{system} sample {}: {} at t = {:.3}", shard.first_sample + s, m.dataset, t[shape[1] - 1]),
                        xlabel: "x".into(),
                        ylabel: "y".into(),
                        xs: x.clone(),
                        ys: y.clone(),
                        values,
                    }
                })
                .collect::<Vec<_>>();
            save_heatmaps(path, &maps, 2)
        }
        _ => Err(Error::Unsupported(format!("preview of samples of shape {:?}", &shape[1..]))),
    }
}

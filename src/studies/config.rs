//! A study's configuration from its defaults and a TOML file: the file's keys merged over the
//! defaults key by key, so a partial table keeps the study's other settings
//! (docs/reliability.md, "Configuration precedence").

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// `base` with the keys of `over` replaced, tables merged recursively. A table that names a
/// different `kind` (an internally tagged enum such as a flow or a coupling) replaces the
/// default's table whole: the old variant's fields do not belong to the new one.
pub fn merge_toml(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) if o.get("kind").is_none_or(|k| b.get("kind") == Some(k)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_toml(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The TOML file at `path`, parsed.
///
/// # Errors
/// `Io` when it cannot be read, `Format` naming the file when it is not TOML.
pub fn read_toml(path: &Path) -> Result<toml::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| Error::Format { path: path.display().to_string(), reason: e.to_string() })
}

/// `defaults` with the table `over` merged over them; `origin` names where `over` came from
/// in errors (a file path, or a tour section).
///
/// # Errors
/// `Format` naming `origin` when a key is unknown or a value has the wrong type.
pub fn merge_over<T: Serialize + DeserializeOwned>(defaults: T, over: toml::Value, origin: &str) -> Result<T> {
    let fmt = |e: String| Error::Format { path: origin.to_string(), reason: e };
    let mut base = toml::Value::try_from(defaults).map_err(|e| fmt(e.to_string()))?;
    merge_toml(&mut base, over);
    base.try_into().map_err(|e: toml::de::Error| fmt(e.to_string()))
}

/// A study's configuration: `defaults` overridden by the keys of the TOML file at `path`.
///
/// # Errors
/// As [`read_toml`] and [`merge_over`].
pub fn load_config_over<T: Serialize + DeserializeOwned>(defaults: T, path: Option<&Path>) -> Result<T> {
    match path {
        None => Ok(defaults),
        Some(path) => merge_over(defaults, read_toml(path)?, &path.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::boltzmann::Likelihood;
    use crate::studies::bg_double_well::BgDoubleWellConfig;
    use crate::studies::bg_particles::{particle_config, BgMethod, BgParticlesConfig, ParticleSystem};
    use crate::studies::fm_double_well::FmDoubleWellConfig;
    use crate::studies::fm_moons::FmMoonsConfig;
    use crate::studies::neural_ode::NeuralOdeConfig;
    use crate::studies::neural_sde::NeuralSdeConfig;
    use crate::studies::param_fit::ParamFitConfig;
    use crate::studies::pde_darcy::DarcyStudyConfig;
    use crate::studies::pde_fields::{PdeProblem, PdeStudyConfig};
    use crate::studies::pde_ns2d::Ns2dStudyConfig;
    use crate::studies::stiff_hybrid::StiffHybridConfig;
    use crate::studies::tour::TourConfig;
    use crate::studies::Overrides;

    /// The `system` key of a config file.
    fn system_of(path: &Path) -> Option<ParticleSystem> {
        read_toml(path).unwrap().get("system").map(|v| v.as_str().unwrap().parse().unwrap())
    }

    /// A `bg particles` config file is merged over its own system's defaults, not DW4's: the
    /// GPU LJ55 config sets the EGNN and leaves the MALA settings to LJ55's defaults.
    #[test]
    fn particle_configs_merge_over_their_systems_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/bg_lj55.toml");
        let sys = system_of(&path).unwrap();
        assert_eq!(sys, ParticleSystem::Lj55);
        let defaults = BgParticlesConfig::for_system(sys);
        let cfg: BgParticlesConfig = load_config_over(defaults.clone(), Some(path.as_path())).unwrap();
        assert_eq!((cfg.eqfm.egnn.particles, cfg.eqfm.egnn.layers, cfg.eqfm.egnn.hidden), (55, 5, 128));
        assert_eq!(cfg.mcmc, defaults.mcmc);
        assert_ne!(cfg.mcmc, BgParticlesConfig::for_system(ParticleSystem::Dw4).mcmc);
        // The GPU LJ13 config: published model size and exact weights over LJ13's defaults.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/bg_lj13.toml");
        assert_eq!(system_of(&path), Some(ParticleSystem::Lj13));
        let lj13 = BgParticlesConfig::for_system(ParticleSystem::Lj13);
        let cfg: BgParticlesConfig = load_config_over(lj13.clone(), Some(path.as_path())).unwrap();
        assert_eq!((cfg.eqfm.egnn.particles, cfg.eqfm.egnn.hidden, cfg.eqfm.likelihood), (13, 128, Likelihood::Exact));
        assert_ne!(lj13.eqfm.likelihood, Likelihood::Exact, "the CPU default weights by flow perturbation");
        assert_eq!(cfg.mcmc, lj13.mcmc);
        // The GPU Navier–Stokes config: PCFM's grid over the CPU defaults, a valid FNO for it.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gpu/pde_ns2d.toml");
        let ns: Ns2dStudyConfig = load_config_over(Ns2dStudyConfig::default(), Some(path.as_path())).unwrap();
        assert_eq!((ns.n, ns.frames, ns.train.run.steps), (64, 50, 20_000));
        assert_eq!(ns.viscosity, Ns2dStudyConfig::default().viscosity);
        ns.validate().unwrap();
        // Every smoke config names a system and parses over its defaults.
        for name in ["bg_dw4.toml", "bg_dw4_eqfm.toml"] {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/smoke").join(name);
            let sys = system_of(&p).expect("a system");
            load_config_over(BgParticlesConfig::for_system(sys), Some(p.as_path())).unwrap();
        }
    }

    /// `--system` and the file's `system` must agree; an unknown system is named.
    #[test]
    fn particle_system_flag_and_file_must_agree() {
        let dir = std::env::temp_dir().join(format!("physflow-config-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "system = \"lj13\"\n").unwrap();
        // Through `particle_config`, not a run: that would pick a device, and burn locks the
        // CPU's default float type at its first tensor for the whole test process.
        let file = |o: Overrides| o.with_file(Some(f.as_path())).unwrap();
        let err = particle_config(&file(Overrides { system: Some(ParticleSystem::Dw4), ..Overrides::default() })).unwrap_err();
        assert!(err.to_string().contains("disagrees"), "{err}");
        let mut cfg = particle_config(&file(Overrides { method: Some(BgMethod::Coupling), steps: Some(7), seed: Some(5), ..Overrides::default() })).unwrap();
        assert_eq!((cfg.system, cfg.method), (ParticleSystem::Lj13, BgMethod::Coupling));
        assert_eq!((cfg.train.steps, *cfg.steps_mut(), cfg.train.seed), (7, 7, 5));
        std::fs::write(&f, "system = 13\n").unwrap();
        let err = particle_config(&file(Overrides::default())).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        std::fs::write(&f, "system = \"lj38\"\n").unwrap();
        let err = particle_config(&file(Overrides::default())).unwrap_err();
        assert!(err.to_string().contains("lj38"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_toml(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("physflow-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, text).unwrap();
        f
    }

    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// Every study's defaults survive the round trip through TOML that the merge makes (an empty
    /// file gives the defaults back), so no default is unrepresentable in a config file.
    #[test]
    fn empty_config_files_give_the_study_defaults() {
        let f = temp_toml("empty", "");
        fn check<T: serde::Serialize + serde::de::DeserializeOwned + Default>(f: &Path) {
            assert_eq!(json(&load_config_over(T::default(), Some(f)).unwrap()), json(&T::default()), "{}", std::any::type_name::<T>());
        }
        check::<NeuralOdeConfig>(&f);
        check::<NeuralSdeConfig>(&f);
        check::<FmMoonsConfig>(&f);
        check::<FmDoubleWellConfig>(&f);
        check::<BgDoubleWellConfig>(&f);
        check::<ParamFitConfig>(&f);
        check::<StiffHybridConfig>(&f);
        check::<Ns2dStudyConfig>(&f);
        check::<DarcyStudyConfig>(&f);
        check::<TourConfig>(&f);
        for sys in [ParticleSystem::Dw4, ParticleSystem::Lj13, ParticleSystem::Lj55] {
            let d = BgParticlesConfig::for_system(sys);
            assert_eq!(json(&load_config_over(d.clone(), Some(f.as_path())).unwrap()), json(&d));
        }
        for p in [PdeProblem::Heat, PdeProblem::Burgers] {
            let d = PdeStudyConfig::for_problem(p);
            assert_eq!(json(&load_config_over(d.clone(), Some(f.as_path())).unwrap()), json(&d));
        }
    }

    /// A partial table changes only its own keys: the double-well Boltzmann study keeps its
    /// spline flow when the file sets `[train] steps`, and the hybrid study keeps its solver
    /// tolerances when the file sets `[fit] iterations` (both were replaced by the library's
    /// defaults before the merge).
    #[test]
    fn partial_tables_merge_key_by_key() {
        let f = temp_toml("partial-bg", "[train]\nsteps = 5\n");
        let cfg = load_config_over(BgDoubleWellConfig::default(), Some(f.as_path())).unwrap();
        let d = BgDoubleWellConfig::default();
        assert_eq!(cfg.train.steps, 5);
        assert_eq!(cfg.train.flow, d.train.flow);
        assert_eq!((cfg.train.batch_size, cfg.n_eval), (d.train.batch_size, d.n_eval));
        let f = temp_toml("partial-hybrid", "[fit]\niterations = 3\n");
        let cfg = load_config_over(StiffHybridConfig::default(), Some(f.as_path())).unwrap();
        let d = StiffHybridConfig::default();
        assert_eq!(cfg.fit.iterations, 3);
        assert_eq!((cfg.fit.sim.rtol, cfg.fit.sim.atol), (d.fit.sim.rtol, d.fit.sim.atol));
        // Unknown keys are still refused, and named.
        let f = temp_toml("unknown", "[train]\nstepz = 5\n");
        let err = load_config_over(BgDoubleWellConfig::default(), Some(f.as_path())).unwrap_err();
        assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("stepz"), "{err}");
    }

    /// Tables merge key by key unless they name a different `kind` (a tagged enum): then the
    /// file's table replaces the default's, whose variant-specific keys would not fit.
    #[test]
    fn a_new_kind_replaces_the_table() {
        let base: toml::Value = toml::from_str("[a]\nkind = \"spline\"\nbins = 8\nbound = 4.0\n[b]\nx = 1\ny = 2\n").unwrap();
        let mut same = base.clone();
        merge_toml(&mut same, toml::from_str("[a]\nkind = \"spline\"\nbins = 16\n[b]\ny = 3\n").unwrap());
        let want: toml::Value = toml::from_str("[a]\nkind = \"spline\"\nbins = 16\nbound = 4.0\n[b]\nx = 1\ny = 3\n").unwrap();
        assert_eq!(same, want);
        let mut other = base.clone();
        merge_toml(&mut other, toml::from_str("[a]\nkind = \"affine\"\nscale = 2.0\n").unwrap());
        assert_eq!(other["a"].as_table().unwrap().len(), 2, "{other}");
        assert_eq!(other["a"]["scale"].as_float(), Some(2.0));
    }
}

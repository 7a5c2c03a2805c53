//! The `physflow` command end to end, on the CPU at smoke-test sizes (`.ci/smoke/*.toml`): every
//! subcommand runs and writes the files it names, config precedence (study defaults < file <
//! flags) holds, and bad command lines exit non-zero with the cause named. The argument
//! parsing of every subcommand is tested in `src/cli` (`try_parse_from`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-cli-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `physflow --quiet --out <out> args…` from the repository root; returns (success,
/// stdout, stderr).
fn physflow(out: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_physflow"))
        .current_dir(root())
        .arg("--quiet")
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("the physflow binary runs");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs a command that must succeed and checks that every file it reports (`wrote …`) exists
/// and is not empty; returns stdout.
fn ok(out: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = physflow(out, args);
    assert!(success, "`physflow {}` failed:\n{stdout}\n{stderr}", args.join(" "));
    let wrote: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("wrote ")).collect();
    assert!(!wrote.is_empty(), "`physflow {}` reported no files:\n{stdout}", args.join(" "));
    for f in wrote {
        let p = if Path::new(f).is_absolute() { PathBuf::from(f) } else { root().join(f) };
        let len = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).len();
        assert!(len > 0, "{} is empty", p.display());
    }
    stdout
}

/// Runs a command that must fail; the error must contain `cause`.
fn refused(out: &Path, args: &[&str], cause: &str) {
    let (success, stdout, stderr) = physflow(out, args);
    assert!(!success, "`physflow {}` was accepted:\n{stdout}", args.join(" "));
    assert!(stderr.contains(cause), "`physflow {}`: expected `{cause}` in the error, got:\n{stderr}", args.join(" "));
    assert!(!stderr.contains("panicked"), "`physflow {}` panicked:\n{stderr}", args.join(" "));
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The training studies at smoke size, each writing its report and figures.
#[test]
fn training_subcommands_run_on_the_cpu() {
    let out = scratch("train");
    ok(&out, &["ode", "--iterations", "3"]);
    ok(&out, &["sde", "--iterations", "2"]);
    ok(&out, &["fm", "double-well", "--config", ".ci/smoke/fm_double_well.toml"]);
    // `fm sample` on that model (its base is data: states at t = 0 must be given).
    let model = out.join("fm_double_well/checkpoint");
    let model_s = model.to_str().unwrap();
    refused(&out, &["fm", "sample", "--model", model_s], "base is data");
    let x0 = out.join("x0.npy");
    physflow::io::write_npy(&x0, &[5, 2], &[0.1, -0.2, 1.0, 0.5, -1.5, 0.0, 2.0, 1.0, -0.3, 0.7]).unwrap();
    let sampler = out.join("sampler.toml");
    std::fs::write(&sampler, "kind = \"bespoke\"\nbase = \"heun\"\nsteps = 1\nt = [0.0, 1.0]\nt_dot = [1.0, 1.0]\ns = [1.0, 1.0]\ns_dot = [0.0, 0.0]\n")
        .unwrap();
    let stdout = ok(&out, &["fm", "sample", "--model", model_s, "--x0", x0.to_str().unwrap(), "--sampler", sampler.to_str().unwrap()]);
    assert!(stdout.contains("(2 evaluations)"), "{stdout}");
    let (shape, samples) = physflow::io::read_npy(&out.join("fm_sample/samples.npy")).unwrap();
    assert_eq!(shape, [5, 2]);
    assert!(samples.iter().all(|v| v.is_finite()));
    refused(&out, &["fm", "sample", "--model", model_s, "--x0", x0.to_str().unwrap(), "--log-density"], "no known density");
    std::fs::write(&sampler, "kind = \"bespoke\"\nbase = \"heun\"\nsteps = 1\nt = [0.0, 0.5]\nt_dot = [1.0, 1.0]\ns = [1.0, 1.0]\ns_dot = [0.0, 0.0]\n")
        .unwrap();
    refused(&out, &["fm", "sample", "--model", model_s, "--x0", x0.to_str().unwrap(), "--sampler", sampler.to_str().unwrap()], "bespoke.t");
    ok(&out, &["pde", "heat", "--config", ".ci/smoke/pde.toml"]);
    ok(&out, &["pde", "ns2d", "--config", ".ci/smoke/pde_ns2d.toml"]);
    ok(&out, &["pde", "darcy", "--config", ".ci/smoke/pde_darcy.toml"]);
    ok(&out, &["bg", "double-well", "--config", ".ci/smoke/bg_double_well.toml"]);
    ok(&out, &["bg", "particles", "--system", "dw4", "--config", ".ci/smoke/bg_dw4.toml"]);
    // The f64 subcommands run in the same kind of process (the hybrid model used to fail
    // here: the f32 device was made before the command asked for f64).
    ok(&out, &["fit"]);
    ok(&out, &["hybrid", "--iterations", "1"]);
    std::fs::remove_dir_all(&out).unwrap();
}

/// `demo` at smoke size: every pillar once, through the study table, and one index page
/// (Markdown and HTML) whose figures all exist.
#[test]
fn demo_tours_every_pillar_and_writes_an_index() {
    let out = scratch("demo");
    let stdout = ok(&out, &["demo", "--config", ".ci/smoke/demo.toml"]);
    let md = std::fs::read_to_string(out.join("index.md")).unwrap();
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for pillar in ["Neural ODE", "Stiff system", "Neural SDE", "Boltzmann generator", "Flow matching", "Constrained PDE fields"] {
        assert!(md.contains(pillar) && html.contains(pillar) && stdout.contains(pillar), "{pillar} missing");
    }
    let figures: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("![")).map(|l| &l[l.find("](").unwrap() + 2..l.len() - 1]).collect();
    assert!(figures.len() >= 6, "{figures:?}");
    for f in figures {
        assert!(std::fs::read(out.join(f)).unwrap().len() > 1000, "{f}");
        assert!(html.contains(&format!("<img src=\"{f}\"")), "{f} not in the HTML page");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// `simulate` in every format, then `data inspect` and `data convert` on what it wrote.
#[test]
fn simulate_and_data_subcommands() {
    let out = scratch("sim");
    ok(&out, &["simulate", "lorenz", "--samples", "4", "--n-times", "5", "--format", "npy"]);
    ok(&out, &["simulate", "lorenz", "--samples", "4", "--n-times", "5", "--format", "csv"]);
    ok(&out, &["simulate", "heat1d", "--samples", "4", "--shards", "2", "--n-times", "5"]);
    let shard = out.join("simulate/heat1d/shard-00000.h5");
    let shard_s = shard.to_str().unwrap();
    let inspect = physflow(&out, &["data", "inspect", shard_s]);
    assert!(inspect.0 && inspect.1.contains("layout: PDEBench"), "{}\n{}", inspect.1, inspect.2);
    let grouped = out.join("grouped.h5");
    let stdout = ok(&out, &["data", "convert", shard_s, grouped.to_str().unwrap(), "--to", "grouped"]);
    assert!(stdout.contains("Grouped"), "{stdout}");
    // A rerun with the same arguments finds the shards finished.
    let again = ok(&out, &["simulate", "heat1d", "--samples", "4", "--shards", "2", "--n-times", "5"]);
    assert!(again.contains("(0 simulated, 2 already there)"), "{again}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Precedence: the study's defaults < the file (partial tables merge key by key) < flags. A
/// seed in the file stands unless `--seed` is given (`--seed` used to default to 0 and
/// overwrite it).
#[test]
fn config_precedence() {
    let out = scratch("precedence");
    let cfg = out.join("moons.toml");
    let smoke = std::fs::read_to_string(root().join(".ci/smoke/fm_moons.toml")).unwrap();
    std::fs::write(&cfg, format!("seed = 7\n{smoke}")).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let report = out.join("fm_moons/fm_moons_report.json");
    ok(&out, &["fm", "moons", "--config", cfg_s]);
    let r = json(&report);
    assert_eq!(r["config"]["seed"], 7, "the file's seed");
    assert_eq!(r["config"]["steps"], 20, "the file's steps");
    assert_eq!(r["config"]["lr"], json_default_lr(), "the study's default where the file is silent");
    // The same output directory: the checkpoints made with seed 7 belong to another
    // configuration, so they are set aside and the models trained afresh (not resumed).
    let (success, _, stderr) = physflow(&out, &["--seed", "3", "fm", "moons", "--config", cfg_s, "--steps", "5"]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("made for another configuration of the study; removed, training afresh"), "the discarded checkpoints are named:\n{stderr}");
    let r = json(&report);
    assert_eq!((r["config"]["seed"].as_u64(), r["config"]["steps"].as_u64()), (Some(3), Some(5)), "flags win");
    let fresh = scratch("precedence-fresh");
    ok(&fresh, &["--seed", "3", "fm", "moons", "--config", cfg_s, "--steps", "5"]);
    assert_eq!(numbers(r.clone()), numbers(json(&fresh.join("fm_moons/fm_moons_report.json"))), "same numbers as a run in a fresh directory");
    // `--fresh` removes the study's directory first: a file left in it is gone, and the
    // numbers are again those of the run in a new directory.
    let marker = out.join("fm_moons/left_over.txt");
    std::fs::write(&marker, "from an earlier run").unwrap();
    ok(&out, &["--seed", "3", "fm", "moons", "--config", cfg_s, "--steps", "5", "--fresh"]);
    assert!(!marker.exists(), "--fresh left {} in place", marker.display());
    assert_eq!(numbers(r), numbers(json(&report)), "--fresh reproduces the run in a new directory");
    refused(&out, &["ode", "--resume", "--fresh"], "cannot be used with");
    std::fs::remove_dir_all(&fresh).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// A report's numbers: without wall-clock times and file paths.
fn numbers(mut v: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !(k.contains("seconds") || k == "files"));
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn json_default_lr() -> serde_json::Value {
    serde_json::to_value(physflow::studies::fm_moons::FmMoonsConfig::default().lr).unwrap()
}

/// Bad command lines and config files: non-zero exit, the cause named, no panic.
#[test]
fn bad_command_lines_are_refused_with_the_cause() {
    let out = scratch("bad");
    let f = |name: &str, text: &str| {
        let p = out.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    refused(&out, &["dmeo"], "unrecognized subcommand");
    refused(&out, &["fm", "moons", "--config", "missing.toml"], "missing.toml");
    refused(&out, &["fm", "moons", "--config", &f("typo.toml", "stepz = 3\n")], "stepz");
    refused(&out, &["fm", "moons", "--config", &f("type.toml", "steps = \"many\"\n")], "steps");
    refused(&out, &["bg", "particles", "--system", "lj38"], "lj38");
    refused(&out, &["bg", "particles", "--system", "dw4", "--config", &f("lj13.toml", "system = \"lj13\"\n")], "disagrees");
    refused(&out, &["simulate", "no_such_system"], "unknown system");
    refused(&out, &["simulate", "lorenz", "--format", "xlsx"], "format");
    refused(&out, &["data", "convert", "a.h5", "b.h5", "--to", "sideways"], "sideways");
    refused(&out, &["data", "inspect", "missing.h5"], "missing.h5");
    refused(&out, &["pde", "heat", "--config", &f("heat_ns.toml", "problem = \"burgers\"\n")], "burgers");
    refused(&out, &["pde", "heat", "--config", &f("heat_nfe0.toml", "nfes = [2, 0]\n")], "nfes");
    refused(&out, &["fm", "moons", "--config", &f("moons_nfe0.toml", "nfes = [0, 4]\n")], "nfes");
    refused(&out, &["fm", "double-well", "--config", &f("dw_nfe0.toml", "nfes = [8, 0]\n")], "nfes");

    std::fs::remove_dir_all(&out).unwrap();
}

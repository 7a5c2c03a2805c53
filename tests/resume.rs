//! Kill and resume: each trainer of the `physflow` command (the neural ODE demo, the neural
//! SDE study, flow matching, functional flow matching of PDE fields, Boltzmann generators by
//! energy and by data) is started in a subprocess, killed with
//! SIGKILL at a random moment after its first checkpoint, and run again (with `--resume` where
//! the command has it); the final parameters (the last checkpoint's files, byte for byte) and
//! the report's numbers must equal those of a run that was never interrupted. A checkpoint is
//! one directory swapped in by renames (`train::Checkpoint`) holding the loop state, and each
//! step draws from its own seeded stream (`train::step_rng`), so a kill during a save leaves
//! the previous checkpoint whole and the resumed steps draw what the uninterrupted ones drew.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A trainer: its subcommand, config file, whether reruns need `--resume`, and where its
/// checkpoint and report go under `--out`.
struct Trainer {
    args: &'static [&'static str],
    config: &'static str,
    resume_flag: bool,
    checkpoint: &'static str,
    report: &'static str,
}

const TRAINERS: &[Trainer] = &[
    Trainer {
        args: &["ode"],
        config: "iterations = 120\ncheckpoint_every = 10\nhidden = [16, 16]\nn_train = 8\nn_test = 4\nn_times = 21\n",
        resume_flag: true,
        checkpoint: "neural_ode/checkpoint",
        report: "neural_ode/neural_ode_report.json",
    },
    Trainer {
        args: &["sde"],
        config: "iterations = 60\ncheckpoint_every = 5\nn_train = 128\nn_test = 128\nbatch = 64\nt_end = 1.0\nn_times = 21\ndt = 0.05\ndrift_hidden = [16, 16]\ndiffusion_hidden = [8]\n",
        resume_flag: true,
        checkpoint: "neural_sde/checkpoint",
        report: "neural_sde/neural_sde_report.json",
    },
    Trainer {
        args: &["pde", "heat"],
        config: "nx = 10\nnt = 8\nn_train = 48\nconditions = 2\nensemble = 6\nsample_steps = 8\nnfes = [2, 8]\n[train.run]\nsteps = 60\nbatch_size = 8\ncheckpoint_every = 5\n[train.net]\nkind = \"fno\"\nwidth = 8\nmodes = [3, 3]\nlayers = 2\npadding = [2, 2]\ntime_features = 2\nprojection = 16\n",
        resume_flag: false,
        checkpoint: "pde_heat/checkpoint",
        report: "pde_heat/report.json",
    },
    Trainer {
        args: &["fm", "double-well"],
        config: "steps = 60\ncheckpoint_every = 5\nbatch_size = 64\nhidden = [16, 16]\nn_train = 512\nn_eval = 256\nsolve_steps = 10\nnfes = [2, 8]\n",
        resume_flag: false,
        checkpoint: "fm_double_well/checkpoint",
        report: "fm_double_well/fm_double_well_report.json",
    },
    Trainer {
        args: &["bg", "double-well"],
        config: "n_eval = 2000\nn_boot = 10\nmcmc_chains = 20\nmcmc_samples = 20\n[train]\nflow = { layers = [\n    { kind = \"spline_coupling\", parity = 0, hidden = [16], bins = 8, bound = 4.0 },\n    { kind = \"lu_linear\" },\n    { kind = \"spline_coupling\", parity = 1, hidden = [16], bins = 8, bound = 4.0 },\n] }\nsteps = 60\nbatch_size = 64\nlog_every = 10\ncheckpoint_every = 5\n",
        resume_flag: false,
        checkpoint: "bg_double_well/checkpoint",
        report: "bg_double_well/bg_double_well_report.json",
    },
    Trainer {
        args: &["bg", "particles", "--system", "dw4"],
        config: "method = \"coupling\"\nn_eval = 1000\nn_boot = 10\ncompare = []\n[train]\nflow = { layers = [\n    { kind = \"act_norm\" },\n    { kind = \"affine_coupling\", parity = 0, hidden = [16], scale_bound = 3.0 },\n    { kind = \"affine_coupling\", parity = 1, hidden = [16], scale_bound = 3.0 },\n] }\nsteps = 60\nbatch_size = 64\nweight_data = 1.0\nweight_energy = 0.1\nenergy_ramp = 10\nlog_every = 10\ncheckpoint_every = 5\n[mcmc]\nchains = 16\nburn_in = 100\nsamples = 20\nthin = 5\nstep_size = 0.05\n[reference]\nchains = 16\nburn_in = 200\nsamples = 40\nthin = 5\nstep_size = 0.05\n",
        resume_flag: false,
        checkpoint: "bg_dw4/checkpoint_coupling",
        report: "bg_dw4/bg_dw4_report.json",
    },
];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn command(t: &Trainer, out: &Path, config: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physflow"));
    c.arg("--quiet").arg("--out").arg(out).args(t.args).arg("--config").arg(config);
    if resume && t.resume_flag {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn run_to_end(t: &Trainer, out: &Path, config: &Path, resume: bool) {
    let o = command(t, out, config, resume).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The checkpoint's files, by name, with their bytes, less what may differ between two
/// processes: JSON files without their wall-clock seconds; burn module records (`*.bpk`) with
/// their parameter ids zeroed (burn draws a random id per parameter in each process; the
/// tensors' bytes are compared). Optimizer records are keyed and ordered by those ids, so they
/// are left out; a lost or wrong optimizer state would show in the parameters and the loss log
/// after the resumed steps.
fn checkpoint(t: &Trainer, out: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = out.join(t.checkpoint);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            if name.ends_with(".json") {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                strip_seconds(&mut v);
                Some((name, serde_json::to_vec(&v).unwrap()))
            } else if name.ends_with(".bpk") {
                (!name.contains("optim")).then(|| (name, mask_param_ids(bytes)))
            } else {
                Some((name, bytes))
            }
        })
        .collect();
    files.sort();
    files
}

/// Zeroes the 8-byte id after each `param_id` key (CBOR: the key, then 0x1b and a u64).
fn mask_param_ids(mut b: Vec<u8>) -> Vec<u8> {
    let key = b"param_id\x1b";
    let mut i = 0;
    while let Some(k) = b[i..].windows(key.len()).position(|w| w == key) {
        let at = i + k + key.len();
        let end = (at + 8).min(b.len());
        b[at..end].fill(0);
        i = end;
    }
    b
}

fn strip_seconds(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            // Wall-clock measurements: `*second*` (seconds, per second), `*ms_per_*`, `*_ms`.
            m.retain(|k, _| !(k.contains("second") || k.contains("ms_per_") || k.ends_with("_ms")));
            m.values_mut().for_each(strip_seconds);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

/// The report's numbers (not its file paths or timings).
fn report(t: &Trainer, out: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(t.report)).unwrap()).unwrap();
    strip_seconds(&mut v);
    v.as_object_mut().unwrap().remove("files");
    v
}

#[cfg(unix)]
#[test]
fn killed_training_resumes_bit_identically() {
    for t in TRAINERS {
        kill_and_resume(t);
    }
}

#[cfg(unix)]
fn kill_and_resume(t: &Trainer) {
    let name = t.args.join("-");
    let base = scratch(&name);
    let config = base.join("config.toml");
    std::fs::write(&config, t.config).unwrap();
    let straight = base.join("straight");
    run_to_end(t, &straight, &config, false);

    // Kill at a random moment after the first checkpoint; retry if the run finished first.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut killed_at = None;
    for attempt in 0..5u32 {
        let out = base.join(format!("killed-{attempt}"));
        let mut child = command(t, &out, &config, false).spawn().unwrap();
        let state = out.join(t.checkpoint).join("state.json");
        let start = Instant::now();
        while !state.exists() && start.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // 0–{200 >> attempt} ms after the first checkpoint: mid-step, mid-save or between saves.
        std::thread::sleep(Duration::from_micros(u64::from((seed >> (attempt * 3)) % (200_000 >> attempt))));
        if child.try_wait().unwrap().is_some() {
            continue;
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        if out.join(t.report).exists() {
            continue;
        }
        let step: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        killed_at = Some((out, step));
        break;
    }
    let (out, state) = killed_at.unwrap_or_else(|| panic!("`{name}` was not killed before it finished in 5 attempts"));
    eprintln!("{name}: killed with the checkpoint at step {}", state["state"]["step"]);
    run_to_end(t, &out, &config, true);
    assert_eq!(report(t, &out), report(t, &straight), "{name}: report of the resumed run");
    let (a, b) = (checkpoint(t, &out), checkpoint(t, &straight));
    assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((file, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name}: checkpoint file {file} differs after the resume");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// Dataset generation killed (SIGKILL) once its first shard is on disk, then rerun with the
/// same arguments: the finished shards are verified and kept, the rest simulated, and every
/// shard and the manifest end byte-identical to an uninterrupted run (shards are written under
/// a temporary name and renamed, so a kill mid-write leaves no partial shard under its name).
#[cfg(unix)]
#[test]
fn killed_dataset_generation_resumes_to_the_same_bytes() {
    let base = scratch("simulate");
    let args = ["simulate", "heat1d", "--samples", "96", "--shards", "12", "--n-times", "41"];
    let run = |out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_physflow")).arg("--quiet").arg("--out").arg(out).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let straight = base.join("straight");
    run(&straight);
    let files = |out: &Path| -> Vec<(String, Vec<u8>)> {
        let dir = out.join("simulate/heat1d");
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "h5" || e == "json"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let mut bytes = std::fs::read(&p).unwrap();
                if name.ends_with(".json") {
                    let mut j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    strip_seconds(&mut j);
                    bytes = serde_json::to_vec(&j).unwrap();
                }
                (name, bytes)
            })
            .collect();
        v.sort();
        v
    };
    let want = files(&straight);
    let mut killed = None;
    for attempt in 0..5 {
        let out = base.join(format!("killed-{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_physflow"))
            .arg("--quiet")
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let first = out.join("simulate/heat1d/shard-00000.h5");
        let start = Instant::now();
        while !first.exists() && child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_micros(200));
        }
        if child.try_wait().unwrap().is_some() {
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let done =
            std::fs::read_dir(out.join("simulate/heat1d")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("shard-")).count();
        if done < 12 {
            killed = Some((out, done));
            break;
        }
    }
    let (out, done) = killed.expect("the generation was killed before it finished in one of 5 attempts");
    eprintln!("killed with {done} of 12 shards written");
    run(&out);
    let got = files(&out);
    assert_eq!(got.iter().map(|f| &f.0).collect::<Vec<_>>(), want.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{name} differs after the resumed generation");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

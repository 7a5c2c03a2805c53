//! Kill and resume: the `physflow demo` trainer (the neural ODE study) is started in a
//! subprocess, killed with SIGKILL at a random moment after its first checkpoint, and resumed
//! with `--resume`; the final parameters (the last checkpoint's files, byte for byte) and the
//! report's numbers must equal those of a run that was never interrupted. A checkpoint is one
//! directory swapped in by renames (`train::Checkpoint`), so a kill during a save leaves the
//! previous one whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "iterations = 120\ncheckpoint_every = 10\nhidden = [16, 16]\nn_train = 8\nn_test = 4\nn_times = 21\n";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn demo(out: &Path, config: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physflow"));
    c.arg("--quiet").arg("--out").arg(out).arg("demo").arg("--config").arg(config);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn run_to_end(out: &Path, config: &Path, resume: bool) {
    let o = demo(out, config, resume).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The checkpoint's files, by name, with their bytes; `state.json` without its wall-clock
/// seconds (the only thing that may differ).
fn checkpoint(out: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = out.join("neural_ode/checkpoint");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            let bytes = if name == "state.json" {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                strip_seconds(&mut v);
                serde_json::to_vec(&v).unwrap()
            } else {
                bytes
            };
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn strip_seconds(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !k.contains("seconds"));
            m.values_mut().for_each(strip_seconds);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

/// The report's numbers (not its file paths or timings).
fn report(out: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("neural_ode/neural_ode_report.json")).unwrap()).unwrap();
    strip_seconds(&mut v);
    v.as_object_mut().unwrap().remove("files");
    v
}

#[cfg(unix)]
#[test]
fn killed_training_resumes_bit_identically() {
    let base = scratch("demo");
    let config = base.join("demo.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let straight = base.join("straight");
    run_to_end(&straight, &config, false);

    // Kill at a random moment after the first checkpoint; retry if the run finished first.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut killed_at = None;
    for attempt in 0..5u32 {
        let out = base.join(format!("killed-{attempt}"));
        let mut child = demo(&out, &config, false).spawn().unwrap();
        let state = out.join("neural_ode/checkpoint/state.json");
        let start = Instant::now();
        while !state.exists() && start.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // 0–400 ms after the first checkpoint: mid-step, mid-save or between saves.
        std::thread::sleep(Duration::from_millis(u64::from((seed >> (attempt * 3)) % 400)));
        if child.try_wait().unwrap().is_some() {
            continue;
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        if out.join("neural_ode/neural_ode_report.json").exists() {
            continue;
        }
        let step: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        killed_at = Some((out, step));
        break;
    }
    let (out, state) = killed_at.expect("the run was killed before it finished in one of 5 attempts");
    eprintln!("killed with the checkpoint at {}", state["state"]["step"]);
    run_to_end(&out, &config, true);
    assert_eq!(report(&out), report(&straight), "report of the resumed run");
    let (a, b) = (checkpoint(&out), checkpoint(&straight));
    assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "checkpoint file {name} differs after the resume");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

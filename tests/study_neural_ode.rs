//! The neural ODE study end to end on a small budget: it trains (the loss falls), writes its
//! figure and report, and resumes from its checkpoint.

use burn::tensor::Device;
use physflow::studies::neural_ode::{run, NeuralOdeConfig};

fn small() -> NeuralOdeConfig {
    NeuralOdeConfig { n_train: 6, n_test: 3, n_times: 11, t_end: 5.0, hidden: vec![16, 16], iterations: 30, checkpoint_every: 10, ..NeuralOdeConfig::default() }
}

#[test]
fn study_trains_writes_and_resumes() {
    let dir = std::env::temp_dir().join(format!("physflow-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device = Device::flex();
    let cfg = NeuralOdeConfig { iterations: 20, ..small() };
    let report = run(&cfg, &device, &dir, false, true).unwrap();
    // Training on the full-horizon MSE must improve on the untrained network.
    assert!(report.train_mse_final < 0.5 * report.train_mse_initial, "{report:?}");
    for f in &report.files {
        assert!(std::path::Path::new(f).exists(), "{f} missing");
    }
    assert!(dir.join("checkpoint/state.json").exists());
    // Resume to 30 iterations: continues at 20 (the loss log of the first 20 steps is kept as
    // it was; a restart would log other values, its cosine schedule being over 30 steps), and
    // reports the untrained error of the same seed. Interrupted runs resuming bit-identically
    // are tested in tests/resume.rs.
    let log = |v: &serde_json::Value| -> Vec<serde_json::Value> { v["state"]["log"].as_array().unwrap().iter().map(|r| r["values"].clone()).collect() };
    let read = || serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("checkpoint/state.json")).unwrap()).unwrap();
    let before = log(&read());
    let resumed = run(&small(), &device, &dir, true, true).unwrap();
    assert_eq!(resumed.iterations, 30);
    let after = log(&read());
    assert!(!before.is_empty() && after.len() > before.len() && after[..before.len()] == before[..], "{before:?} → {after:?}");
    assert_eq!(resumed.train_mse_initial, report.train_mse_initial);
    let _ = std::fs::remove_dir_all(&dir);
}

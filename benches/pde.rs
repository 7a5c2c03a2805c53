//! Criterion bench of constrained vs unconstrained sampling of PDE fields at equal NFE: the
//! default study architecture (FNO width 32, 8 × 8 modes, 4 layers) on each family's 32 × 32
//! space-time grid, 16 fields, 10 Euler steps, every sampler with one model evaluation per step.
//! The target (issue 8) is constrained ≤ 1.5× unconstrained. Weights are random: the model's
//! cost does not depend on them, and the projections' cost only through the Gauss–Newton
//! iteration counts of the nonlinear constraints (the trained studies report those counts and
//! their own times per field, see docs/pde.md).
//!
//! `cargo bench --bench pde` (criterion's median per batch; divide by 16 for a field).

use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use physflow::pde::{self, FieldModel, FieldModelMeta, PcfmOptions, SampleConfig, Sampler};
use physflow::studies::pde_fields::{sample_condition, PdeProblem, PdeStudyConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const BATCH: usize = 16;
const STEPS: usize = 10;

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    for problem in [PdeProblem::Heat, PdeProblem::Burgers, PdeProblem::ReactionDiffusion] {
        let cfg = PdeStudyConfig::for_problem(problem);
        let (grid, constraint) = sample_condition(&cfg, 1).expect("a condition of the family");
        let meta =
            FieldModelMeta { grid, net: cfg.train.net.clone(), gp: cfg.train.gp.clone(), sigma_min: cfg.train.sigma_min, mean: vec![0.5], std: vec![0.3] };
        let model = FieldModel::new(meta, &cfg.train.net.init(0, &device).expect("net")).expect("model");
        let x0 = model.noise_tensor(&mut StdRng::seed_from_u64(2), BATCH);
        let mut methods = vec![Sampler::Unconstrained, Sampler::ProjectEnd, Sampler::Pcfm(PcfmOptions::default()), Sampler::Guidance { eta: 0.5 }];
        if constraint.is_linear() {
            methods.push(Sampler::Eci { mix: 1 });
        }
        let mut group = c.benchmark_group(format!("pde_{}", problem.name()));
        group.sample_size(10);
        for m in methods {
            let scfg = SampleConfig { method: m, steps: STEPS, ..SampleConfig::default() };
            group.bench_function(m.label(), |b| b.iter(|| pde::sample(&model, &x0, Some(constraint.as_ref()), &scfg).expect("sampling")));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

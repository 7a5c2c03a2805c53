use physflow::sim::{self, systems::*, Method, SimOptions, System};
fn main() {
    let sys = Robertson::default();
    let y = [1.1, 0.12, 0.11];
    let p = sys.params();
    for k in 0..3 {
        let mut e = vec![0.0; 3]; e[k] = 1.0;
        let mut jp = vec![0.0; 3];
        sys.param_jvp(0.0, &y, &p, &e, &mut jp);
        let h = 1e-6 * p[k];
        let mut pp = p.clone(); pp[k] += h; let mut pm = p.clone(); pm[k] -= h;
        let (mut fp, mut fm) = (vec![0.0; 3], vec![0.0; 3]);
        sys.rhs(0.0, &y, &pp, &mut fp); sys.rhs(0.0, &y, &pm, &mut fm);
        println!("k={k} analytic {:?} fd {:?}", jp, (0..3).map(|i| (fp[i]-fm[i])/(2.0*h)).collect::<Vec<_>>());
    }
    for m in [Method::TrBdf2, Method::Esdirk34] {
        for rtol in [1e-8, 1e-9] {
            let r = sim::simulate(&VanDerPol::default(), &[3000.0], &SimOptions { method: m, rtol, atol: rtol * 1e-2, ..Default::default() });
            println!("{m:?} {rtol}: {:?}", r.map(|t| (t.states, t.stats)));
        }
    }
}

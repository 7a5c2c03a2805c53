//! HDF5 files: h5py fixtures read with exact values, round trips of every layout
//! with every backend (and across backends), conversions, and errors on bad files.
//!
//! The fixtures under `data/h5/` were written by h5py 3.16.0 (HDF5 2.0.0) with
//! `data/h5/make_fixtures.py`; the formulas below are the ones that script uses
//! (see `data/h5/README.md`), all exact in f32.

use std::path::{Path, PathBuf};

use physflow::io::h5::{describe, Attr, Compression, DType, DatasetOptions, H5Backend, H5File, H5Tree};
use physflow::io::pdebench::{self, Field, Grouped, Layout, SingleFile};
use physflow::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/h5").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("physflow-io-h5-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn pdebench_1d_fixture_exact() {
    for b in H5Backend::available() {
        let f = H5File::open_with(&fixture("pdebench_1d.h5"), b).unwrap();
        let info = f.info("tensor").unwrap();
        assert_eq!(info.shape, vec![4, 6, 16]);
        assert_eq!(info.dtype, DType::F32);
        assert_eq!(info.chunks, Some(vec![1, 6, 16]), "{b:?}");
        assert_eq!(info.filters, vec!["shuffle", "deflate"], "{b:?}");
        let (_, v) = f.read_f32("tensor").unwrap();
        for n in 0..4 {
            for t in 0..6 {
                for x in 0..16 {
                    let want = n as f32 + 0.25 * t as f32 + x as f32 / 64.0;
                    assert_eq!(v[(n * 6 + t) * 16 + x], want, "{b:?} tensor[{n},{t},{x}]");
                }
            }
        }
        // One sample through the row window equals the same rows of the full read.
        let (shape, row) = f.read_f32_rows("tensor", 2, 1).unwrap();
        assert_eq!(shape, vec![1, 6, 16]);
        assert_eq!(row, v[2 * 96..3 * 96]);
        assert_eq!(f.attr("/", "beta").unwrap(), Attr::Float(0.4));
        assert_eq!(f.attr("/", "Nu").unwrap(), Attr::Float(0.001));
    }
    let s = SingleFile::read(&fixture("pdebench_1d.h5")).unwrap();
    assert_eq!(s.fields.len(), 1);
    assert_eq!(s.fields[0].name, "tensor");
    assert_eq!(s.x.as_ref().unwrap()[3], 3.5 / 16.0);
    assert_eq!(s.t.as_ref().unwrap().len(), 7, "PDEBench's T + 1 time points are accepted");
}

#[test]
fn pdebench_2d_cfd_lzf_fixture_exact() {
    for b in H5Backend::available() {
        let f = H5File::open_with(&fixture("pdebench_2d_cfd.h5"), b).unwrap();
        assert_eq!(f.info("Vx").unwrap().filters, vec!["shuffle", "lzf"], "{b:?}");
    }
    let s = SingleFile::read(&fixture("pdebench_2d_cfd.h5")).unwrap();
    let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["density", "pressure", "Vx", "Vy"], "read in PDEBench's CFD order");
    let c_of = |name: &str| ["density", "Vx", "Vy", "pressure"].iter().position(|n| *n == name).unwrap();
    for fld in &s.fields {
        let c = c_of(&fld.name) as f32;
        assert_eq!(fld.shape, vec![2, 3, 8, 4]);
        for n in 0..2 {
            for t in 0..3 {
                for i in 0..8 {
                    for j in 0..4 {
                        let want = 100.0 * c + 10.0 * n as f32 + t as f32 + i as f32 / 8.0 + j as f32 / 32.0;
                        assert_eq!(fld.data[((n * 3 + t) * 8 + i) * 4 + j], want, "{}[{n},{t},{i},{j}]", fld.name);
                    }
                }
            }
        }
    }
    assert_eq!(s.y.as_ref().unwrap(), &vec![0.0, 0.25, 0.5, 0.75]);
    assert_eq!(s.attrs["M"], Attr::Float(1.0));
}

#[test]
fn pdebench_grouped_fixture_exact() {
    for b in H5Backend::available() {
        let f = H5File::open_with(&fixture("pdebench_grouped.h5"), b).unwrap();
        assert_eq!(f.info("0001/data").unwrap().filters, vec!["deflate", "fletcher32"], "{b:?}");
        assert_eq!(f.attr("/", "equation").unwrap(), Attr::Str("diffusion-reaction".into()), "variable-length UTF-8 ({b:?})");
        assert_eq!(f.attr("0002", "seed").unwrap(), Attr::Int(2));
        assert_eq!(pdebench::detect(&f).unwrap(), Layout::Grouped);
    }
    let g = Grouped::read(&fixture("pdebench_grouped.h5")).unwrap();
    assert_eq!(g.seeds.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["0000", "0001", "0002"]);
    for (s, seed) in g.seeds.iter().enumerate() {
        assert_eq!(seed.shape, vec![5, 8, 4, 2]);
        for t in 0..5 {
            for i in 0..8 {
                for j in 0..4 {
                    for c in 0..2 {
                        let want = 1000.0 * s as f32 + 100.0 * c as f32 + t as f32 + i as f32 / 8.0 + j as f32 / 32.0;
                        assert_eq!(seed.data[((t * 8 + i) * 4 + j) * 2 + c], want);
                    }
                }
            }
        }
    }
    assert_eq!(g.t.as_ref().unwrap(), &vec![0.0, 0.125, 0.25, 0.375, 0.5]);
}

#[test]
fn scalar_fixture_f64_ints_and_attributes() {
    for b in H5Backend::available() {
        let f = H5File::open_with(&fixture("scalar_f64.h5"), b).unwrap();
        let (shape, v) = f.read_f64("values").unwrap();
        assert_eq!(shape, vec![3, 5]);
        for r in 0..3 {
            for c in 0..5 {
                assert_eq!(v[r * 5 + c], 0.1 * (5 * r + c) as f64, "{b:?} values[{r},{c}] bit for bit");
            }
        }
        assert_eq!(f.read_i64("ints").unwrap().1, vec![-2, 0, 7, 1 << 40]);
        assert_eq!(f.attr("/", "label").unwrap(), Attr::Str("scalar test".into()));
        assert_eq!(f.attr("/", "vec").unwrap(), Attr::Floats(vec![1.5, -2.0, 3.25]));
        let listing = describe(&f).unwrap();
        assert!(listing.contains("/values  [3, 5] F64") && listing.contains("@label = \"scalar test\""), "{listing}");
    }
}

/// A single file with two fields and every attribute kind, written and read
/// with every pair of backends and every compression.
#[test]
fn round_trip_every_backend_pair_and_compression() {
    let shape = vec![3usize, 4, 5, 2];
    let n: usize = shape.iter().product();
    let u: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let v: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("nu".to_string(), Attr::Float(1e-3));
    attrs.insert("steps".to_string(), Attr::Int(-12));
    attrs.insert("name".to_string(), Attr::Str("Brusselator — ü".into()));
    attrs.insert("ks".to_string(), Attr::Ints(vec![1, 2, 3]));
    attrs.insert("ps".to_string(), Attr::Floats(vec![0.5, 1.25]));
    attrs.insert("labels".to_string(), Attr::Strs(vec!["u".into(), "v".into()]));
    let file = SingleFile {
        fields: vec![Field { name: "u".into(), shape: shape.clone(), data: u }, Field { name: "v".into(), shape: shape.clone(), data: v }],
        x: Some((0..5).map(|i| i as f32 / 5.0).collect()),
        y: Some(vec![0.0, 0.5]),
        t: Some((0..4).map(|i| i as f32 * 0.1).collect()),
        attrs,
    };
    let comps = [Compression::None, Compression::Deflate(6), Compression::Lzf];
    for w in H5Backend::available() {
        for r in H5Backend::available() {
            for (ci, c) in comps.iter().enumerate() {
                let opts = DatasetOptions { compression: *c, shuffle: ci > 0, fletcher32: ci == 1, ..Default::default() };
                let path = tmp(&format!("rt-{w:?}-{r:?}-{ci}.h5"));
                file.to_tree(&opts).unwrap().write_with(&path, w).unwrap();
                let h = H5File::open_with(&path, r).unwrap();
                let info = h.info("u").unwrap();
                if *c != Compression::None {
                    assert_eq!(info.chunks, Some(vec![1, 4, 5, 2]), "one sample per chunk by default");
                }
                for fld in &file.fields {
                    assert_eq!(h.read_f32(&fld.name).unwrap(), (fld.shape.clone(), fld.data.clone()), "{w:?} → {r:?} {c:?}");
                    assert_eq!(h.read_f32_rows(&fld.name, 1, 2).unwrap().1, fld.data[40..120].to_vec());
                }
                let got = h.attrs("/").unwrap();
                for (k, v) in &file.attrs {
                    assert_eq!(&got[k], v, "attribute {k}, {w:?} → {r:?}");
                }
                if r == H5Backend::Pure {
                    assert_eq!(SingleFile::read(&path).unwrap(), {
                        let mut f = file.clone();
                        f.attrs.insert("fields".into(), Attr::Strs(vec!["u".into(), "v".into()]));
                        f
                    });
                }
            }
        }
    }
}

#[test]
fn layouts_convert_both_ways_exactly() {
    let src = fixture("pdebench_1d.h5");
    let grouped = tmp("conv-grouped.h5");
    let back = tmp("conv-single.h5");
    assert_eq!(pdebench::convert(&src, &grouped, None, &DatasetOptions::samples()).unwrap(), Layout::Grouped);
    let g = Grouped::read(&grouped).unwrap();
    assert_eq!(g.seeds.len(), 4);
    assert_eq!(g.seeds[1].shape, vec![6, 16, 1]);
    assert_eq!(g.seeds[1].data[16 * 2 + 3], 1.0 + 0.5 + 3.0 / 64.0, "data[t=2, x=3, c=0] of seed 1");
    assert_eq!(pdebench::convert(&grouped, &back, None, &DatasetOptions::samples()).unwrap(), Layout::Single);
    let (a, b) = (SingleFile::read(&src).unwrap(), SingleFile::read(&back).unwrap());
    assert_eq!(a, b, "single → grouped → single is the identity");
    // The h5py grouped fixture (two channels) to single and back.
    let single = tmp("conv-from-grouped.h5");
    pdebench::convert(&fixture("pdebench_grouped.h5"), &single, None, &DatasetOptions::default()).unwrap();
    let s = SingleFile::read(&single).unwrap();
    assert_eq!(s.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["channel_0", "channel_1"]);
    assert_eq!(s.fields[1].shape, vec![3, 5, 8, 4]);
    let g2 = s.to_grouped().unwrap();
    assert_eq!(
        g2.seeds.iter().map(|s| &s.data).collect::<Vec<_>>(),
        Grouped::read(&fixture("pdebench_grouped.h5")).unwrap().seeds.iter().map(|s| &s.data).collect::<Vec<_>>()
    );
}

#[test]
fn missing_and_mismatched_datasets_are_named_errors() {
    let f = H5File::open(&fixture("pdebench_1d.h5")).unwrap();
    match f.read_f32("density") {
        Err(Error::MissingDataset { file, dataset, hint }) => {
            assert!(file.ends_with("pdebench_1d.h5") && dataset == "density" && hint.contains("tensor"), "{file} {dataset} {hint}");
        }
        other => panic!("expected MissingDataset, got {other:?}"),
    }
    match f.expect("tensor", Some(4), "[N, T, X, Y]") {
        Err(Error::DatasetMismatch { dataset, expected, got, .. }) => {
            assert!(dataset == "tensor" && expected.contains("rank 4") && got.contains("rank 3"), "{expected} {got}")
        }
        other => panic!("expected DatasetMismatch, got {other:?}"),
    }
    assert!(matches!(f.read_f32_rows("tensor", 3, 2), Err(Error::DatasetMismatch { .. })), "rows past the end");
    // A coordinate of the wrong length.
    let mut tree = H5Tree::new();
    tree.add_f32("tensor", &[1, 2, 3], vec![0.0; 6], &DatasetOptions::default()).unwrap();
    tree.add_f32("x-coordinate", &[4], vec![0.0; 4], &DatasetOptions::default()).unwrap();
    let p = tmp("bad-coord.h5");
    tree.write(&p).unwrap();
    assert!(matches!(SingleFile::read(&p), Err(Error::DatasetMismatch { ref dataset, .. }) if dataset == "x-coordinate"));
    // Not HDF5 at all, and no file.
    let junk = tmp("junk.h5");
    std::fs::write(&junk, b"this is not an HDF5 file").unwrap();
    assert!(matches!(H5File::open(&junk), Err(Error::Hdf5 { .. })));
    assert!(matches!(H5File::open(&tmp("nope.h5")), Err(Error::Io { .. })));
    assert!(matches!(H5Backend::parse("gpu"), Err(Error::InvalidArgument { .. })));
}

/// Reads everything in a file; any error counts as "detected".
fn read_all(path: &Path) -> physflow::Result<Vec<(String, Vec<f32>)>> {
    let f = H5File::open(path)?;
    let mut out = Vec::new();
    for node in f.tree()? {
        if let physflow::io::h5::Node::Dataset { info, .. } = node {
            if info.dtype.is_numeric() {
                out.push((info.path.clone(), f.read_f32(&info.path)?.1));
            }
        }
    }
    Ok(out)
}

/// Truncation anywhere gives an error, never a panic (h5py files and ours), and the error
/// comes at open: the file is shorter than the end-of-file address in its superblock, which
/// is how the HDF5 library detects it. (Reading only the numeric datasets, as `read_all` does,
/// used to miss cuts that removed attributes only.)
#[test]
fn truncated_files_are_errors() {
    let ours = tmp("trunc-src.h5");
    let mut tree = H5Tree::new();
    tree.add_f32("tensor", &[4, 8, 8], (0..256).map(|i| i as f32).collect(), &DatasetOptions::samples()).unwrap();
    tree.write(&ours).unwrap();
    for src in [fixture("pdebench_1d.h5"), fixture("pdebench_grouped.h5"), ours] {
        let bytes = std::fs::read(&src).unwrap();
        let cut = tmp("trunc.h5");
        for len in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            match H5File::open(&cut) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains("truncated") || msg.contains("no HDF5 signature"), "{} cut to {len}: {msg}", src.display());
                }
                Ok(_) => panic!("{} cut to {len} of {} bytes opened", src.display(), bytes.len()),
            }
            let r = std::panic::catch_unwind(|| read_all(&cut));
            match r {
                Ok(Err(_)) => {}
                Ok(Ok(_)) => panic!("{} cut to {len} of {} bytes read without error", src.display(), bytes.len()),
                Err(_) => panic!("{} cut to {len} bytes panicked", src.display()),
            }
        }
    }
}

/// Single-bit flips in a file whose metadata and chunks are all checksummed
/// (physflow's writer: version-2 object headers with checksums, Fletcher-32 on
/// every dataset): each read either fails or returns the original values —
/// never a panic, never wrong data.
#[test]
fn bit_flips_are_detected_or_harmless() {
    let src = tmp("flip-src.h5");
    let mut tree = H5Tree::new();
    let opts = DatasetOptions { fletcher32: true, ..DatasetOptions::samples() };
    tree.add_f32("tensor", &[3, 4, 8], (0..96).map(|i| (i as f32).sqrt()).collect(), &opts).unwrap();
    tree.add_f32(
        "x-coordinate",
        &[8],
        (0..8).map(|i| i as f32 / 8.0).collect(),
        &DatasetOptions { chunks: Some(vec![8]), fletcher32: true, ..Default::default() },
    )
    .unwrap();
    tree.write(&src).unwrap();
    let good = read_all(&src).unwrap();
    let bytes = std::fs::read(&src).unwrap();
    let flipped = tmp("flip.h5");
    let (mut detected, mut harmless) = (0, 0);
    for pos in (0..bytes.len()).step_by(3) {
        let mut b = bytes.clone();
        b[pos] ^= 1 << (pos % 8);
        std::fs::write(&flipped, &b).unwrap();
        match std::panic::catch_unwind(|| read_all(&flipped)) {
            Err(_) => panic!("bit flip at byte {pos} panicked"),
            Ok(Err(_)) => detected += 1,
            Ok(Ok(v)) if v == good => harmless += 1,
            Ok(Ok(_)) => panic!("bit flip at byte {pos} of {} returned wrong data", bytes.len()),
        }
    }
    assert!(detected > 0, "flips were detected ({detected} detected, {harmless} harmless)");
}

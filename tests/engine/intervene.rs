//! Capture, override and resume: capturing changes nothing, a resumed pass equals the full pass
//! with the same override bit for bit (every site kind, at layer 0 and at the last layer), and
//! the captured sites add up as the block computes them.

use super::*;
use attnviz::engine::{
    Ablation, AttentionMaps, Captured, ForwardOutput, Interventions, Override, Resume, Site,
};

fn setups() -> Vec<RandomSetup> {
    let base = RandomSetup {
        seed: 41,
        heads: 4,
        kv_div: 2,
        d_head: 4,
        layers: 3,
        placement: NormPlacement::Pre,
        position: 1,
        rms: true,
        gated: true,
        causal: true,
        biases: true,
    };
    vec![
        base.clone(),
        RandomSetup {
            seed: 42,
            kv_div: 1,
            placement: NormPlacement::Post,
            position: 0,
            rms: false,
            gated: false,
            causal: false,
            ..base
        },
    ]
}

fn every_site(layers: usize, heads: usize) -> Vec<Site> {
    let mut sites = vec![Site::Resid(layers)];
    for l in 0..layers {
        sites.extend([Site::Resid(l), Site::Attn(l), Site::Mlp(l)]);
        for h in 0..heads {
            sites.extend([Site::Head(l, h), Site::Pattern(l, h)]);
        }
    }
    sites
}

fn full(
    t: &Transformer,
    x: &Array2<f32>,
    opts: &RunOptions,
    iv: &Interventions,
) -> (ForwardOutput, Captured) {
    let n = x.nrows();
    t.forward_with(
        Resume::embeddings(x.clone()),
        &vec![false; n],
        opts,
        iv,
        &mut |_| true,
    )
    .unwrap()
}

fn assert_same(a: &ForwardOutput, b: &ForwardOutput, what: &str) {
    assert_eq!(a.hidden, b.hidden, "{what}: hidden states");
    assert_eq!(a.maps, b.maps, "{what}: maps");
    assert_eq!(a.layer_norms, b.layer_norms, "{what}: layer norms");
}

/// A replacement for `value`: itself scaled and shifted, and for a pattern rows that still sum
/// to one (uniform over the keys a causal row may see).
fn replacement(site: Site, value: &Array2<f32>) -> Array2<f32> {
    match site {
        Site::Pattern(..) => {
            let mut p = Array2::<f32>::zeros(value.raw_dim());
            for ((i, j), v) in p.indexed_iter_mut() {
                if value.row(i).iter().skip(j).any(|&x| x > 0.0) || value[(i, j)] > 0.0 {
                    *v = 1.0;
                }
            }
            for mut row in p.rows_mut() {
                let s: f32 = row.sum();
                row /= s.max(1.0);
            }
            p
        }
        _ => value.mapv(|v| 0.5 * v + 0.25),
    }
}

#[test]
fn capturing_everything_changes_nothing() {
    for setup in setups() {
        let t = random_transformer(&setup);
        let mut r = Lcg(setup.seed);
        let x = r.mat(7, t.d_model(), 1.0);
        let opts = RunOptions {
            keep_layer_norms: true,
            ..RunOptions::default()
        };
        let plain = t
            .forward(x.clone(), &[false; 7], &opts, &mut |_| true)
            .unwrap();
        let sites = every_site(setup.layers, setup.heads);
        let (out, captured) = full(&t, &x, &opts, &Interventions::capture(sites.clone()));
        assert_same(&plain, &out, "capture");
        assert_eq!(captured.sites().count(), sites.len());
        // Resid(0) is the input; the last residual, normed, is the hidden output (pre-LN has a
        // final norm only when the parts say so: none here, so they are equal).
        assert_eq!(captured.get(Site::Resid(0)).unwrap(), &x);
        for l in 0..setup.layers {
            let p = captured.get(Site::Pattern(l, 1)).unwrap();
            assert_eq!(p, &*plain.maps.head(l, 1).unwrap());
            let z = captured.get(Site::Head(l, 0)).unwrap();
            assert_eq!(z.dim(), (7, setup.d_head));
            // Pre-LN with no final norm: resid(l+1) = (resid(l) + attn(l)) + mlp(l), the same
            // f32 additions in the same order as the block.
            if setup.placement == NormPlacement::Pre {
                let sum = (captured.get(Site::Resid(l)).unwrap()
                    + captured.get(Site::Attn(l)).unwrap())
                    + captured.get(Site::Mlp(l)).unwrap();
                assert_eq!(&sum, captured.get(Site::Resid(l + 1)).unwrap(), "layer {l}");
            }
        }
    }
}

#[test]
fn a_resumed_pass_equals_the_full_pass_for_every_site_kind() {
    for setup in setups() {
        let t = random_transformer(&setup);
        let mut r = Lcg(setup.seed + 7);
        let n = 6;
        let x = r.mat(n, t.d_model(), 1.0);
        let opts = RunOptions {
            keep_layer_norms: true,
            ..RunOptions::default()
        };
        let layers = setup.layers;
        let all = every_site(layers, setup.heads);
        let (base, captured) = full(&t, &x, &opts, &Interventions::capture(all.clone()));
        let base_maps: &AttentionMaps = &base.maps;
        let sites = [
            Site::Resid(0),
            Site::Resid(layers - 1),
            Site::Attn(0),
            Site::Attn(layers - 1),
            Site::Mlp(1),
            Site::Head(0, 1),
            Site::Head(layers - 1, 3),
            Site::Pattern(1, 2),
        ];
        for site in sites {
            for positions in [None, Some(vec![0, n - 1])] {
                let value = replacement(site, captured.get(site).unwrap());
                let iv = Interventions {
                    capture: Vec::new(),
                    overrides: vec![Override {
                        site,
                        value,
                        positions: positions.clone(),
                    }],
                };
                let (whole, _) = full(&t, &x, &opts, &iv);
                assert_ne!(
                    whole.hidden, base.hidden,
                    "{site} {positions:?} changed nothing"
                );
                let l = site.layer();
                let resume = Resume {
                    layer: l,
                    resid: captured.get(Site::Resid(l)).unwrap().clone(),
                    maps: base_maps.layers_before(l),
                    layer_norms: base.layer_norms.as_ref().unwrap()[..l].to_vec(),
                    frozen: None,
                };
                let mut layers_run = Vec::new();
                let (resumed, _) = t
                    .forward_with(resume, &[false; 6], &opts, &iv, &mut |done| {
                        layers_run.push(done);
                        true
                    })
                    .unwrap();
                assert_same(&whole, &resumed, &format!("{site} {positions:?}"));
                // Only the layers from l on ran.
                assert_eq!(layers_run, ((l + 1)..=layers).collect::<Vec<_>>());
                // The layers before the site are the base run's, bit for bit.
                for layer in 0..=l.min(layers - 1) {
                    for h in 0..setup.heads {
                        let same = resumed.maps.head(layer, h) == base.maps.head(layer, h);
                        let overridden =
                            matches!(site, Site::Pattern(sl, sh) if (sl, sh) == (layer, h));
                        assert!(same || overridden || layer == l, "{site}: layer {layer}");
                    }
                }
            }
        }
        // A resume at the last layer boundary with nothing changed gives the base run.
        let resume = Resume {
            layer: layers,
            resid: captured.get(Site::Resid(layers)).unwrap().clone(),
            maps: base_maps.layers_before(layers),
            layer_norms: base.layer_norms.clone().unwrap(),
            frozen: None,
        };
        let (end, _) = t
            .forward_with(
                resume,
                &[false; 6],
                &opts,
                &Interventions::default(),
                &mut |_| true,
            )
            .unwrap();
        assert_same(&base, &end, "resume after the last layer");
    }
}

#[test]
fn ablation_is_an_override_of_the_head_output() {
    let setup = setups().remove(0);
    let t = random_transformer(&setup);
    let x = Lcg(5).mat(5, t.d_model(), 1.0);
    let site = Site::Head(1, 2);
    let (base, captured) = full(
        &t,
        &x,
        &RunOptions::default(),
        &Interventions::capture([site]),
    );
    let z = captured.get(site).unwrap();
    for (ablation, value) in [
        (Ablation::zero(1, 2), Array2::zeros(z.raw_dim())),
        (Ablation::mean(1, 2), {
            let mean = z.mean_axis(ndarray::Axis(0)).unwrap();
            Array2::from_shape_fn(z.raw_dim(), |(_, c)| mean[c])
        }),
    ] {
        let opts = RunOptions {
            ablations: vec![ablation],
            ..RunOptions::default()
        };
        let (ablated, cap) = full(&t, &x, &opts, &Interventions::capture([site]));
        let iv = Interventions {
            capture: Vec::new(),
            overrides: vec![Override {
                site,
                value: value.clone(),
                positions: None,
            }],
        };
        let (overridden, _) = full(&t, &x, &RunOptions::default(), &iv);
        // The captured head output is what W_O read: the ablated one.
        let got = cap.get(site).unwrap();
        assert!(
            got.iter().zip(&value).all(|(a, b)| (a - b).abs() <= 1e-6),
            "{ablation}"
        );
        assert!(
            (&ablated.hidden - &overridden.hidden)
                .iter()
                .all(|d| d.abs() <= 1e-5),
            "{ablation}"
        );
        assert_ne!(ablated.hidden, base.hidden);
        // Its own map and every earlier layer's are untouched; later layers change.
        for layer in 0..=1 {
            for h in 0..setup.heads {
                assert_eq!(ablated.maps.head(layer, h), base.maps.head(layer, h));
            }
        }
        assert_ne!(ablated.maps.head(2, 0), base.maps.head(2, 0));
    }
}

#[test]
fn bad_interventions_are_refused_not_panicked() {
    let setup = setups().remove(0);
    let t = random_transformer(&setup);
    let x = Lcg(6).mat(4, t.d_model(), 1.0);
    let run = |opts: &RunOptions, iv: &Interventions, resume: Option<Resume>| {
        let start = resume.unwrap_or_else(|| Resume::embeddings(x.clone()));
        t.forward_with(start, &[false; 4], opts, iv, &mut |_| true)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let plain = RunOptions::default();
    let over = |site, value, positions| Interventions {
        capture: Vec::new(),
        overrides: vec![Override {
            site,
            value,
            positions,
        }],
    };
    let err = run(&plain, &Interventions::capture([Site::Head(3, 0)]), None);
    assert!(
        err.contains("head(3, 0) does not exist (3 layers)"),
        "{err}"
    );
    let err = run(&plain, &Interventions::capture([Site::Pattern(0, 9)]), None);
    assert!(err.contains("(4 heads)"), "{err}");
    let err = run(
        &plain,
        &over(Site::Attn(0), Array2::zeros((4, 3)), None),
        None,
    );
    assert!(err.contains("has shape (4, 3), expected (4, 16)"), "{err}");
    let err = run(
        &plain,
        &over(Site::Attn(0), Array2::zeros((4, 16)), Some(vec![4])),
        None,
    );
    assert!(
        err.contains("names position 4, past the last of 4 tokens"),
        "{err}"
    );
    let err = run(
        &plain,
        &over(Site::Attn(0), Array2::from_elem((4, 16), f32::NAN), None),
        None,
    );
    assert!(err.contains("not finite"), "{err}");
    let twice = RunOptions {
        ablations: vec![Ablation::zero(1, 0), Ablation::mean(1, 0)],
        ..RunOptions::default()
    };
    let err = run(&twice, &Interventions::default(), None);
    assert!(err.contains("head 1.0 is ablated twice"), "{err}");
    let missing = RunOptions {
        ablations: vec![Ablation::zero(0, 4)],
        ..RunOptions::default()
    };
    let err = run(&missing, &Interventions::default(), None);
    assert!(
        err.contains("ablated head 0.4 does not exist (3 layers × 4 heads)"),
        "{err}"
    );
    // A resume whose earlier maps are missing, or that skips an overridden layer.
    let resume = Resume {
        layer: 2,
        resid: x.clone(),
        maps: Vec::new(),
        layer_norms: Vec::new(),
        frozen: None,
    };
    let err = run(&plain, &Interventions::default(), Some(resume.clone()));
    assert!(
        err.contains("needs the maps of the 2 layers before it"),
        "{err}"
    );
    let no_maps = RunOptions {
        keep_maps: false,
        ..RunOptions::default()
    };
    let err = run(
        &no_maps,
        &Interventions::capture([Site::Attn(1)]),
        Some(resume),
    );
    assert!(err.contains("attn(1) is before layer 2"), "{err}");
}

//! Frozen rows: a resumed pass that takes the rows before `from` from an earlier pass and
//! recomputes only the later ones equals the pass that recomputes every row, bit for bit, under
//! a causal mask (RoPE and ALiBi, every override kind activation patching uses); it refuses
//! what would change the frozen rows.

use super::*;
use attnviz::engine::{
    Ablation, Captured, FrozenRows, Interventions, Mistake, Override, Resume, Site,
};
use std::sync::Arc;

const N: usize = 7;

fn causal_setup(position: u8, placement: NormPlacement) -> RandomSetup {
    RandomSetup {
        seed: 57 + u64::from(position),
        heads: 4,
        kv_div: 2,
        d_head: 4,
        layers: 3,
        placement,
        position,
        rms: true,
        gated: true,
        causal: true,
        biases: true,
    }
}

fn plain() -> RunOptions {
    RunOptions {
        keep_maps: false,
        ..RunOptions::default()
    }
}

/// Every block's input and the output of a pass over `x`, and one head's output per layer.
fn base_run(t: &Transformer, x: &Array2<f32>, layers: usize) -> (Vec<Array2<f32>>, Captured) {
    let mut sites: Vec<Site> = (0..=layers).map(Site::Resid).collect();
    sites.extend((0..layers).map(|l| Site::Head(l, 1)));
    let (_, mut cap) = t
        .forward_with(
            Resume::embeddings(x.clone()),
            &[false; N],
            &plain(),
            &Interventions::capture(sites),
            &mut |_| true,
        )
        .unwrap();
    let resid = (0..=layers)
        .map(|l| cap.take(Site::Resid(l)).unwrap())
        .collect();
    (resid, cap)
}

fn resumed(
    t: &Transformer,
    layer: usize,
    resid: Array2<f32>,
    frozen: Option<FrozenRows>,
    iv: &Interventions,
    opts: &RunOptions,
) -> Result<(Array2<f32>, Array2<f32>), String> {
    let layers = t.blocks().len();
    let start = Resume {
        layer,
        resid,
        maps: Vec::new(),
        layer_norms: Vec::new(),
        frozen,
    };
    let (out, mut cap) = t
        .forward_with(start, &[false; N], opts, iv, &mut |_| true)
        .map_err(|e| e.to_string())?;
    Ok((out.hidden, cap.take(Site::Resid(layers)).unwrap()))
}

#[test]
fn frozen_rows_give_the_full_pass_bit_for_bit() {
    for (position, placement) in [
        (1, NormPlacement::Pre),
        (2, NormPlacement::Pre),
        (0, NormPlacement::Post),
    ] {
        let setup = causal_setup(position, placement);
        let t = random_transformer(&setup);
        let mut r = Lcg(setup.seed);
        let x = r.mat(N, t.d_model(), 1.0);
        let (resid, heads) = base_run(&t, &x, setup.layers);
        let shared = Arc::new(resid.clone());
        let other = r.mat(N, t.d_model(), 1.0);
        for layer in 0..setup.layers {
            for from in 1..N {
                let head = heads.get(Site::Head(layer, 1)).unwrap();
                // The head's replacement keeps the rows before `from` (what patching writes).
                let mut head_value = head.mapv(|v| 0.5 * v - 0.25);
                head_value
                    .slice_mut(ndarray::s![..from, ..])
                    .assign(&head.slice(ndarray::s![..from, ..]));
                let cases: Vec<(&str, Array2<f32>, Vec<Override>)> = vec![
                    (
                        "resid",
                        {
                            let mut x_l = resid[layer].clone();
                            x_l.row_mut(from).assign(&other.row(from));
                            x_l
                        },
                        Vec::new(),
                    ),
                    (
                        "attn",
                        resid[layer].clone(),
                        vec![Override {
                            site: Site::Attn(layer),
                            value: other.clone(),
                            positions: Some(vec![from, N - 1]),
                        }],
                    ),
                    (
                        "mlp",
                        resid[layer].clone(),
                        vec![Override {
                            site: Site::Mlp(layer),
                            value: other.clone(),
                            positions: Some(vec![from]),
                        }],
                    ),
                    (
                        "head",
                        resid[layer].clone(),
                        vec![Override {
                            site: Site::Head(layer, 1),
                            value: head_value,
                            positions: None,
                        }],
                    ),
                ];
                for (name, start, overrides) in cases {
                    let iv = Interventions {
                        capture: vec![Site::Resid(setup.layers)],
                        overrides,
                    };
                    let whole = resumed(&t, layer, start.clone(), None, &iv, &plain()).unwrap();
                    let frozen = FrozenRows {
                        from,
                        resid: Arc::clone(&shared),
                    };
                    let part = resumed(&t, layer, start, Some(frozen), &iv, &plain()).unwrap();
                    let what = format!("{position} {placement:?} {name} layer {layer} from {from}");
                    assert_eq!(whole.0, part.0, "{what}: hidden");
                    assert_eq!(whole.1, part.1, "{what}: captured output");
                    // The patch reached the output (the test compares something that moved),
                    // and the rows before `from` are the base run's.
                    assert_ne!(whole.1, resid[setup.layers], "{what}");
                    let before = ndarray::s![..from, ..];
                    assert_eq!(part.1.slice(before), resid[setup.layers].slice(before));
                }
            }
        }
    }
}

#[test]
fn what_would_change_the_frozen_rows_is_refused() {
    let setup = causal_setup(1, NormPlacement::Pre);
    let t = random_transformer(&setup);
    let mut r = Lcg(setup.seed);
    let x = r.mat(N, t.d_model(), 1.0);
    let (resid, _) = base_run(&t, &x, setup.layers);
    let shared = Arc::new(resid.clone());
    let frozen = |from: usize| FrozenRows {
        from,
        resid: Arc::clone(&shared),
    };
    let capture_out = Interventions::capture([Site::Resid(setup.layers)]);
    let run = |from: usize, iv: &Interventions, opts: &RunOptions| {
        resumed(&t, 1, resid[1].clone(), Some(frozen(from)), iv, opts).unwrap_err()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            run(0, &capture_out, &plain()),
            "rows before 0 of 7 tokens cannot be frozen",
        ),
        (
            run(N, &capture_out, &plain()),
            "rows before 7 of 7 tokens cannot be frozen",
        ),
        (
            run(
                3,
                &capture_out,
                &RunOptions {
                    ablations: vec![Ablation::mean(2, 0)],
                    ..plain()
                },
            ),
            "the mean ablation 2.0:mean averages over every row",
        ),
        (
            run(
                3,
                &capture_out,
                &RunOptions {
                    // Without its causal mask (the teaching mistake) every token sees every other.
                    mistakes: vec![Mistake::NoCausalMask],
                    ..plain()
                },
            ),
            "the mask lets every token see every other",
        ),
        (
            run(3, &Interventions::capture([Site::Attn(1)]), &plain()),
            "captures residuals only, not attn(1)",
        ),
        (
            run(
                3,
                &Interventions {
                    capture: Vec::new(),
                    overrides: vec![Override {
                        site: Site::Mlp(1),
                        value: resid[1].clone(),
                        positions: Some(vec![2]),
                    }],
                },
                &plain(),
            ),
            "the override of mlp(1) writes row 2, before the first recomputed row 3",
        ),
    ];
    for (err, want) in cases {
        assert!(err.contains(want), "{err:?} should say {want:?}");
    }
    // A model that is not causal by construction, under a window mask: token 0 sees token 1.
    let bidirectional = random_transformer(&RandomSetup {
        causal: false,
        ..setup.clone()
    });
    let window = RunOptions {
        mask: "window:1".parse().unwrap(),
        ..plain()
    };
    let why = bidirectional
        .can_freeze_rows(1, &[false; N], 0, &window, &capture_out)
        .unwrap_err();
    assert_eq!(
        why,
        "token 0 sees token 1 under the mask, so it depends on the rows from 1 on"
    );
    // A mean ablation below the resumed layer is the frozen pass's own business.
    let below = RunOptions {
        ablations: vec![Ablation::mean(0, 0)],
        ..plain()
    };
    resumed(
        &t,
        1,
        resid[1].clone(),
        Some(frozen(3)),
        &capture_out,
        &below,
    )
    .unwrap();
    // Residuals that do not cover every layer are refused.
    let short = FrozenRows {
        from: 3,
        resid: Arc::new(resid[..2].to_vec()),
    };
    let err = resumed(&t, 1, resid[1].clone(), Some(short), &capture_out, &plain()).unwrap_err();
    assert!(
        err.contains("need the residuals entering all 3 layers and the output, got 2"),
        "{err}"
    );
    // The same answer through the public check.
    let why = t
        .can_freeze_rows(3, &[false; N], 1, &RunOptions::default(), &capture_out)
        .unwrap_err();
    assert!(why.contains("keeps no maps"), "{why}");
    t.can_freeze_rows(3, &[false; N], 1, &plain(), &capture_out)
        .unwrap();
}

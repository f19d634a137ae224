//! The backward pass against central finite differences of an f64 reference forward (written
//! here, independently of the engine), on random transformers covering every op and option, on
//! the demo model and on the bert, gpt2, llama and mistral fixtures with each supported target;
//! and gradients that do not depend on the thread count.

use super::*;
use attnviz::engine::{Ablation, AblationMode, DimSubset, llama3_frequencies, rope_frequencies};
use attnviz::grad::{Differentiable, ResolvedTarget, TargetKind, TargetSpec};
use attnviz::model::LoadedModel;
use attnviz::model::lm_head::logprob_of_row;

/// What the reference forward applies besides the weights.
struct RefOpts {
    /// The effective mask, as a spec string.
    spec: String,
    scale: ScoreScale,
    /// Ablated heads: zeroed, or every row replaced by the rows' mean.
    ablated: Vec<Ablation>,
    dims: Vec<DimSubset>,
    /// Added to one probability after the softmax: (layer, head, query, key, delta).
    nudge: Option<(usize, usize, usize, usize, f64)>,
}

impl RefOpts {
    fn plain(spec: &str) -> Self {
        Self {
            spec: spec.to_owned(),
            scale: ScoreScale::InvSqrtDHead,
            ablated: Vec::new(),
            dims: Vec::new(),
            nudge: None,
        }
    }
}

/// Final hidden states (after the final norm) of the transformer `t` at input `x`, in f64.
fn hidden64(t: &TransformerParts, x: &Mat, o: &RefOpts) -> Mat {
    let n = x.len();
    let dh = t.d_head;
    let allowed = allowed64(&o.spec, n, t.causal);
    let freqs: Option<Vec<f64>> = match t.position {
        AttentionPosition::Rope { theta } => Some(rope_frequencies(dh, theta)),
        AttentionPosition::RopeLlama3 { theta, scaling } => {
            Some(llama3_frequencies(dh, theta, scaling))
        }
        _ => None,
    }
    .map(|f| f.iter().map(|&v| f64::from(v)).collect());
    let slopes = attnviz::engine::alibi_slopes(t.heads);
    let factor = f64::from(o.scale.factor(dh));
    let mut x = x.clone();
    for (layer, block) in t.blocks.iter().enumerate() {
        let mut h = x.clone();
        if t.placement == NormPlacement::Pre {
            norm64(&block.attention_norm, &mut h);
        }
        let a = &block.attention;
        let mut q = matmul(&h, &a.wq, a.bq.as_ref());
        let mut k = matmul(&h, &a.wk, a.bk.as_ref());
        let v = matmul(&h, &a.wv, a.bv.as_ref());
        if let Some(freqs) = &freqs {
            for (mat, heads) in [(&mut q, t.heads), (&mut k, t.kv_heads)] {
                for (pos, row) in mat.iter_mut().enumerate() {
                    for head in 0..heads {
                        for (p, &f) in freqs.iter().enumerate() {
                            let (s, c) = (pos as f64 * f).sin_cos();
                            let (i1, i2) = (head * dh + p, head * dh + p + dh / 2);
                            let (a1, a2) = (row[i1], row[i2]);
                            row[i1] = a1 * c - a2 * s;
                            row[i2] = a2 * c + a1 * s;
                        }
                    }
                }
            }
        }
        let mut concat = vec![vec![0.0; t.heads * dh]; n];
        for head in 0..t.heads {
            let kv = head / (t.heads / t.kv_heads);
            let keep: Vec<bool> = match o
                .dims
                .iter()
                .find(|d| d.layer_idx == layer && d.head_idx == head)
            {
                Some(d) => (0..dh).map(|c| d.dims.contains(&c)).collect(),
                None => vec![true; dh],
            };
            for i in 0..n {
                let mut scores = vec![f64::NEG_INFINITY; n];
                for j in 0..n {
                    if !allowed[i][j] {
                        continue;
                    }
                    let mut s = 0.0;
                    for c in (0..dh).filter(|&c| keep[c]) {
                        s += q[i][head * dh + c] * k[j][kv * dh + c];
                    }
                    s *= factor;
                    if t.position == AttentionPosition::Alibi {
                        s -= f64::from(slopes[head]) * i.abs_diff(j) as f64;
                    }
                    scores[j] = s;
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let mut probs = vec![0.0; n];
                if max > f64::NEG_INFINITY {
                    let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                    for j in 0..n {
                        probs[j] = (scores[j] - max).exp() / sum;
                    }
                }
                if let Some((l, hh, qi, kj, delta)) = o.nudge
                    && (l, hh, qi) == (layer, head, i)
                {
                    probs[kj] += delta;
                }
                for c in 0..dh {
                    concat[i][head * dh + c] = (0..n).map(|j| probs[j] * v[j][kv * dh + c]).sum();
                }
            }
            let ablation = o
                .ablated
                .iter()
                .find(|a| (a.layer_idx, a.head_idx) == (layer, head));
            if let Some(a) = ablation {
                for c in head * dh..(head + 1) * dh {
                    let mean = (0..n).map(|i| concat[i][c]).sum::<f64>() / n as f64;
                    for row in concat.iter_mut() {
                        row[c] = match a.mode {
                            AblationMode::Zero => 0.0,
                            AblationMode::Mean => mean,
                        };
                    }
                }
            }
        }
        let attn = matmul(&concat, &a.wo, a.bo.as_ref());
        add(&mut x, &attn);
        let mlp = |x: &Mat| -> Mat {
            let mut hidden = matmul(x, &block.mlp.w_in, block.mlp.b_in.as_ref());
            match &block.mlp.w_gate {
                Some(g) => {
                    let gate = matmul(x, g, None);
                    for (hr, gr) in hidden.iter_mut().zip(&gate) {
                        for (hv, gv) in hr.iter_mut().zip(gr) {
                            *hv *= act64(block.mlp.activation, *gv);
                        }
                    }
                }
                None => {
                    for hv in hidden.iter_mut().flatten() {
                        *hv = act64(block.mlp.activation, *hv);
                    }
                }
            }
            matmul(&hidden, &block.mlp.w_out, block.mlp.b_out.as_ref())
        };
        match t.placement {
            NormPlacement::Pre => {
                let mut h = x.clone();
                norm64(&block.mlp_norm, &mut h);
                add(&mut x, &mlp(&h));
            }
            NormPlacement::Post => {
                norm64(&block.attention_norm, &mut x);
                let m = mlp(&x);
                add(&mut x, &m);
                norm64(&block.mlp_norm, &mut x);
            }
            NormPlacement::None => {
                let m = mlp(&x);
                add(&mut x, &m);
            }
        }
    }
    if let Some(norm) = &t.final_norm {
        norm64(norm, &mut x);
    }
    x
}

/// The `count` largest |g| entries as (row, column).
fn largest(g: &Array2<f32>, count: usize) -> Vec<(usize, usize)> {
    let mut all: Vec<((usize, usize), f32)> =
        g.indexed_iter().map(|(i, &v)| (i, v.abs())).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.into_iter().take(count).map(|(i, _)| i).collect()
}

/// Central difference of `f` along entry (r, c) of `x`.
fn central(x: &Mat, (r, c): (usize, usize), step: f64, f: &dyn Fn(&Mat) -> f64) -> f64 {
    let mut plus = x.clone();
    plus[r][c] += step;
    let mut minus = x.clone();
    minus[r][c] -= step;
    (f(&plus) - f(&minus)) / (2.0 * step)
}

// ---------------------------------------------------------------------------------------------
// The engine alone: T = Σ w ⊙ hidden on random transformers, every option.

fn engine_case(setup: &RandomSetup, o: &RefOpts, opts: &RunOptions, n: usize) -> f64 {
    let t = random_transformer(setup);
    let mut r = Lcg(setup.seed ^ 0x5eed);
    let d = t.d_model();
    let x = r.mat(n, d, 1.0);
    let w = r.mat(n, d, 1.0);
    let (hidden, tape) = t.forward_taped(x.clone(), &vec![false; n], opts).unwrap();
    // The taped forward gives the ordinary forward's hidden states, to the bit.
    let plain = t
        .forward(x.clone(), &vec![false; n], opts, &mut |_| true)
        .unwrap();
    assert_eq!(hidden, plain.hidden, "{setup:?}");
    let back = t.backward(&tape, w.clone(), true).unwrap();
    let f = |x: &Mat| -> f64 {
        let h = hidden64(t.parts(), x, o);
        h.iter()
            .flatten()
            .zip(w.iter())
            .map(|(a, &b)| a * f64::from(b))
            .sum()
    };
    let x64 = to_mat(&x);
    let mut worst = 0.0f64;
    for idx in largest(&back.d_input, 6) {
        let fd = central(&x64, idx, 1e-4, &f);
        let got = f64::from(back.d_input[idx]);
        worst = worst.max((got - fd).abs() / fd.abs().max(1e-12));
    }
    // ∂T/∂A per layer by finite differences of the reference, reduced as the engine reduces it.
    let relevance = back.relevance.unwrap();
    assert_eq!(relevance.len(), t.blocks().len());
    let p = t.parts();
    // The reference forward knows no ablations: with them, A comes from the engine's own maps
    // (checked against transformers elsewhere); only the gradient side is under test here.
    let probs = if o.ablated.is_empty() {
        reference_forward(&t, &x, &o.spec, o.scale)
    } else {
        (0..p.blocks.len())
            .map(|l| {
                (0..p.heads)
                    .map(|h| to_mat(&plain.maps.head(l, h).unwrap()))
                    .collect()
            })
            .collect()
    };
    for (layer, map) in relevance.iter().enumerate() {
        for i in 0..n {
            for j in 0..n {
                let mut want = 0.0;
                for head in 0..p.heads {
                    let a = probs[layer][head][i][j];
                    if a == 0.0 || !o.dims.is_empty() {
                        continue;
                    }
                    let nudged = |delta: f64| {
                        let o2 = RefOpts {
                            nudge: Some((layer, head, i, j, delta)),
                            spec: o.spec.clone(),
                            scale: o.scale,
                            ablated: o.ablated.clone(),
                            dims: o.dims.clone(),
                        };
                        let h = hidden64(p, &x64, &o2);
                        h.iter()
                            .flatten()
                            .zip(w.iter())
                            .map(|(a, &b)| a * f64::from(b))
                            .sum::<f64>()
                    };
                    let grad = (nudged(1e-5) - nudged(-1e-5)) / 2e-5;
                    want += (grad * a).max(0.0);
                }
                if !o.dims.is_empty() {
                    continue;
                }
                want /= p.heads as f64;
                let got = f64::from(map[(i, j)]);
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1e-2),
                    "{setup:?} layer {layer} ({i}, {j}): relevance {got} vs {want}"
                );
            }
        }
    }
    worst
}

#[test]
fn engine_gradients_match_finite_differences_for_every_op() {
    let base = RandomSetup {
        seed: 21,
        heads: 2,
        kv_div: 1,
        d_head: 4,
        layers: 2,
        placement: NormPlacement::Pre,
        position: 0,
        rms: false,
        gated: false,
        causal: false,
        biases: true,
    };
    let cases: Vec<(&str, RandomSetup, &str)> = vec![
        ("pre-LN gelu", base.clone(), "none"),
        (
            "post-LN alibi window",
            RandomSetup {
                placement: NormPlacement::Post,
                position: 2,
                seed: 22,
                ..base.clone()
            },
            "window:2",
        ),
        (
            "no norms rope",
            RandomSetup {
                placement: NormPlacement::None,
                position: 1,
                seed: 23,
                ..base.clone()
            },
            "none",
        ),
        (
            "gqa rms gated silu rope causal",
            RandomSetup {
                heads: 4,
                kv_div: 2,
                position: 1,
                rms: true,
                gated: true,
                causal: true,
                seed: 24,
                ..base.clone()
            },
            "causal",
        ),
        (
            "rms gelu_tanh dropped query",
            RandomSetup {
                rms: true,
                seed: 25,
                ..base.clone()
            },
            "drop-queries:1+drop-keys:0",
        ),
    ];
    for (name, setup, spec) in cases {
        let opts = RunOptions {
            mask: MaskSpec::parse(spec).unwrap(),
            ..RunOptions::default()
        };
        let worst = engine_case(&setup, &RefOpts::plain(spec), &opts, 5);
        eprintln!("{name}: worst relative error {worst:.2e}");
        assert!(worst <= 1e-3, "{name}: {worst}");
    }
    // Temperature, a zero- and a mean-ablated head and a dimension subset (relevance skipped
    // with dims); then the two ablations alone, with relevance.
    let setup = RandomSetup {
        seed: 26,
        position: 1,
        ..base
    };
    let dims = vec!["1.0=0,3".parse::<DimSubset>().unwrap()];
    let ablated = vec![Ablation::zero(0, 1), Ablation::mean(1, 1)];
    let o = RefOpts {
        spec: "none".into(),
        scale: ScoreScale::Temperature(0.5),
        ablated: ablated.clone(),
        dims: dims.clone(),
        nudge: None,
    };
    let opts = RunOptions {
        scale: ScoreScale::Temperature(0.5),
        ablations: ablated.clone(),
        dims,
        ..RunOptions::default()
    };
    let worst = engine_case(&setup, &o, &opts, 5);
    eprintln!("temperature, ablation, dims: worst relative error {worst:.2e}");
    assert!(worst <= 1e-3, "{worst}");
    let o = RefOpts {
        ablated: ablated.clone(),
        ..RefOpts::plain("causal")
    };
    let opts = RunOptions {
        mask: MaskSpec::parse("causal").unwrap(),
        ablations: ablated,
        ..RunOptions::default()
    };
    let worst = engine_case(&setup, &o, &opts, 5);
    eprintln!("zero and mean ablation: worst relative error {worst:.2e}");
    assert!(worst <= 1e-3, "{worst}");
}

// ---------------------------------------------------------------------------------------------
// Models: ∂T/∂e against finite differences of T computed in f64 from the model's weights.

/// The transformer's input from input embeddings `e`, in f64, as the model builds it.
fn stack_input64(model: &LoadedModel, e: &Mat) -> Mat {
    let n = e.len();
    let d = e[0].len();
    let pos = match model {
        LoadedModel::Demo { model, .. } => model.position_vectors(n),
        LoadedModel::Checkpoint { model, .. } => {
            let mut zeros = Array2::<f32>::zeros((n, d));
            model.add_positions(&mut zeros).unwrap();
            zeros
        }
    };
    let mut x = e.clone();
    add(&mut x, &to_mat(&pos));
    if let Some(norm) = model.as_checkpoint().and_then(|c| c.embedding_norm()) {
        norm64(norm, &mut x);
    }
    x
}

fn transformer_of(model: &LoadedModel) -> &Transformer {
    match model {
        LoadedModel::Demo { model, .. } => model.transformer(),
        LoadedModel::Checkpoint { model, .. } => model.transformer(),
    }
}

/// T at input embeddings `e`, all in f64.
fn target64(model: &LoadedModel, e: &Mat, target: &ResolvedTarget) -> f64 {
    let n = e.len();
    let spec = model
        .model()
        .applied_mask(&attnviz::engine::RunOptions::default(), n)
        .to_string();
    let hidden = hidden64(
        transformer_of(model).parts(),
        &stack_input64(model, e),
        &RefOpts::plain(&spec),
    );
    match target.kind {
        TargetKind::Similarity => {
            let d = hidden[0].len();
            let mean: Vec<f64> = (0..d)
                .map(|c| hidden.iter().map(|r| r[c]).sum::<f64>() / n as f64)
                .collect();
            let b: Vec<f64> = target
                .reference
                .as_ref()
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let dot: f64 = mean.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            dot / (norm(&mean) * norm(&b))
        }
        TargetKind::Logprob | TargetKind::Contrast => {
            let ckpt = model.as_checkpoint().unwrap();
            let h = &hidden[target.position.unwrap()];
            let foil = (target.kind == TargetKind::Contrast).then(|| target.foil.unwrap() as usize);
            let w = ckpt.head_weight().unwrap();
            logprob_of_row(h, w, None, target.token.unwrap() as usize, foil, false).0
        }
        TargetKind::Mlm => {
            let ckpt = model.as_checkpoint().unwrap();
            let h = &hidden[target.position.unwrap()];
            let head = ckpt.mlm_head().unwrap();
            head.logprob(
                h,
                ckpt.word_embeddings(),
                target.token.unwrap() as usize,
                false,
            )
            .0
        }
    }
}

/// Checks ∂T/∂e on the largest components against central differences of [`target64`];
/// returns the worst relative error.
fn check_model(model: &LoadedModel, tokens: &[Token], spec: &str, text_b: Option<&[Token]>) -> f64 {
    let spec: TargetSpec = spec.parse().unwrap();
    let opts = RunOptions::default();
    let target = model.resolve_target(tokens, &spec, text_b, &opts).unwrap();
    let e = model.input_embeddings(tokens).unwrap();
    let g = model
        .gradient(tokens, e.view(), &target, &opts, false)
        .unwrap();
    // The gradient's T is the resolved T (same input, same kernels).
    assert!(
        (g.value - target.value).abs() <= 1e-9 * target.value.abs().max(1.0),
        "{} vs {}",
        g.value,
        target.value
    );
    let e64 = to_mat(&e);
    let t64 = target64(model, &e64, &target);
    assert!(
        (t64 - g.value).abs() <= 1e-4 * t64.abs().max(1.0),
        "T in f64 {t64} vs {}",
        g.value
    );
    let f = |x: &Mat| target64(model, x, &target);
    let mut worst = 0.0f64;
    for idx in largest(&g.d_embeds, 5) {
        let fd = central(&e64, idx, 1e-4, &f);
        let got = f64::from(g.d_embeds[idx]);
        worst = worst.max((got - fd).abs() / fd.abs().max(1e-12));
    }
    worst
}

fn demo_small() -> LoadedModel {
    LoadedModel::demo(
        DemoConfig {
            layers: 2,
            heads: 4,
            d_model: 64,
            ..DemoConfig::default()
        },
        Default::default(),
    )
    .unwrap()
}

#[test]
fn demo_similarity_gradient_matches_finite_differences() {
    let model = demo_small();
    assert_eq!(model.supported_targets(), vec![TargetKind::Similarity]);
    let tokens = attnviz::tokenize::tokenize("the cat sat on the mat", Default::default()).unwrap();
    let b = attnviz::tokenize::tokenize("a dog lay on a rug", Default::default()).unwrap();
    let worst = check_model(&model, &tokens, "similarity", Some(&b));
    eprintln!("demo similarity: worst relative error {worst:.2e}");
    assert!(worst <= 1e-3, "{worst}");
    // Unsupported targets are clear errors.
    let err = model
        .resolve_target(
            &tokens,
            &"logprob".parse().unwrap(),
            None,
            &RunOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not support the logprob target") && err.contains("similarity"),
        "{err}"
    );
}

#[test]
fn fixture_gradients_match_finite_differences() {
    for name in ["bert", "gpt2", "llama", "mistral"] {
        let model = LoadedModel::checkpoint(&fixture(name), Default::default()).unwrap();
        let ckpt = model.as_checkpoint().unwrap();
        let tokens = ckpt.tokens_from_ids(&[5, 17, 42, 8, 99, 3, 61, 250, 12]);
        let b = ckpt.tokens_from_ids(&[7, 31, 2, 44]);
        let supported = model.supported_targets();
        let mut specs = vec!["similarity"];
        if supported.contains(&TargetKind::Logprob) {
            specs.extend(["logprob", "logprob:4:17", "contrast:8:3:77"]);
        }
        if supported.contains(&TargetKind::Mlm) {
            specs.push("mlm:3");
        }
        for spec in specs {
            let worst = check_model(&model, &tokens, spec, Some(&b));
            eprintln!("{name} {spec}: worst relative error {worst:.2e}");
            assert!(worst <= 1e-3, "{name} {spec}: {worst}");
        }
    }
}

#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    let demo = demo_small();
    let gpt2 = LoadedModel::checkpoint(&fixture("gpt2"), Default::default()).unwrap();
    let llama = LoadedModel::checkpoint(&fixture("llama"), Default::default()).unwrap();
    for n in [49, 97] {
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % 400).collect();
        let demo_tokens = attnviz::tokenize::tokens_from_ids(&ids);
        let cases: [(&LoadedModel, Vec<Token>, &str); 3] = [
            (&demo, demo_tokens, "similarity"),
            (
                &gpt2,
                gpt2.as_checkpoint().unwrap().tokens_from_ids(&ids),
                "logprob",
            ),
            (
                &llama,
                llama.as_checkpoint().unwrap().tokens_from_ids(&ids),
                "contrast:30:4:9",
            ),
        ];
        for (model, tokens, spec) in cases {
            if tokens.len() > model.info().max_positions {
                continue;
            }
            let b = &tokens[..7];
            let spec: TargetSpec = spec.parse().unwrap();
            let target = model
                .resolve_target(&tokens, &spec, Some(b), &RunOptions::default())
                .unwrap();
            let e = model.input_embeddings(&tokens).unwrap();
            let run = |threads| {
                let opts = RunOptions {
                    threads,
                    ..RunOptions::default()
                };
                model
                    .gradient(&tokens, e.view(), &target, &opts, true)
                    .unwrap()
            };
            let one = run(Some(1));
            assert!(one.d_embeds.iter().any(|&v| v != 0.0));
            for threads in [None, Some(4)] {
                assert_eq!(
                    run(threads),
                    one,
                    "{} {n} tokens, {threads:?}",
                    model.info().name
                );
            }
        }
    }
}

#[test]
fn bert_with_an_mlm_head_supports_mlm_and_its_gradient_matches_finite_differences() {
    // The bert fixture plus a seeded `cls.predictions.*` head (BertForMaskedLM's names): the
    // loader finds it, `mlm` becomes supported, and ∂T/∂e matches the f64 reference, both when
    // the model masks position P itself and when the input already holds [MASK] there.
    let dir = edited_fixture(
        "bert",
        "mlm",
        |c| c.to_owned(),
        |t| {
            let mut r = Lcg(77);
            let mut add = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
                let len = shape.iter().product();
                let values = (0..len).map(|_| r.normal() * scale + offset).collect();
                t.push((name.to_owned(), shape, values));
            };
            add(
                "cls.predictions.transform.dense.weight",
                vec![32, 32],
                0.3,
                0.0,
            );
            add("cls.predictions.transform.dense.bias", vec![32], 0.1, 0.0);
            add(
                "cls.predictions.transform.LayerNorm.weight",
                vec![32],
                0.1,
                1.0,
            );
            add(
                "cls.predictions.transform.LayerNorm.bias",
                vec![32],
                0.1,
                0.0,
            );
            add("cls.predictions.bias", vec![300], 0.5, 0.0);
        },
    );
    let model = LoadedModel::checkpoint(&dir, Default::default()).unwrap();
    assert_eq!(
        model.supported_targets(),
        vec![TargetKind::Mlm, TargetKind::Similarity]
    );
    let ckpt = model.as_checkpoint().unwrap();
    let mask = model
        .special_token(attnviz::grad::SpecialToken::Mask)
        .unwrap();
    assert_eq!(mask.text, "[MASK]");
    let tokens = ckpt.tokens_from_ids(&[2, 17, 42, 8, 99, 3]);
    let mut masked = tokens.clone();
    masked[3] = mask.clone();
    // Masking inside and passing [MASK] give the same T.
    let spec: TargetSpec = "mlm:3".parse().unwrap();
    let a = model
        .resolve_target(&tokens, &spec, None, &RunOptions::default())
        .unwrap();
    let b = model
        .resolve_target(&masked, &spec, None, &RunOptions::default())
        .unwrap();
    assert_eq!((a.token, a.value), (b.token, b.value));
    // (check_model's reference does not mask: both inputs hold [MASK] at P already.)
    let mut masked_twice = masked.clone();
    masked_twice[1] = mask.clone();
    let worst = check_model(&model, &masked, "mlm:3", None).max(check_model(
        &model,
        &masked_twice,
        "mlm:1:42",
        None,
    ));
    eprintln!("bert+mlm: worst relative error {worst:.2e}");
    assert!(worst <= 1e-3, "{worst}");
    // Masked inside: the replaced row gets no gradient, the others do.
    let e = model.input_embeddings(&tokens).unwrap();
    let g = model
        .gradient(&tokens, e.view(), &a, &RunOptions::default(), false)
        .unwrap();
    assert!(g.d_embeds.row(3).iter().all(|&v| v == 0.0));
    assert!(g.d_embeds.row(2).iter().any(|&v| v != 0.0));
    // Without the head the target is refused, naming what the model supports.
    let plain = LoadedModel::checkpoint(&fixture("bert"), Default::default()).unwrap();
    let err = plain
        .resolve_target(&tokens, &spec, None, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not support the mlm target") && err.ends_with("similarity"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// all-MiniLM-L6-v2's `similarity` gradient against torch autograd in float64
/// (tests/fixtures/make_minilm_grad_golden.py). Runs when ATTNVIZ_MINILM_DIR names the model.
#[test]
fn minilm_similarity_gradient_matches_torch() {
    let Ok(dir) = std::env::var("ATTNVIZ_MINILM_DIR") else {
        eprintln!("ATTNVIZ_MINILM_DIR is not set; skipping the MiniLM gradient check");
        return;
    };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/minilm_grad_golden.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let model = LoadedModel::checkpoint(std::path::Path::new(&dir), Default::default()).unwrap();
    assert_eq!(model.supported_targets(), vec![TargetKind::Similarity]);
    let ckpt = model.as_checkpoint().unwrap();
    let tokens = ckpt.tokenize(golden["text"].as_str().unwrap()).unwrap();
    let b = ckpt.tokenize(golden["text_b"].as_str().unwrap()).unwrap();
    let ids: Vec<u64> = tokens.iter().map(|t| u64::from(t.id)).collect();
    let want_ids: Vec<u64> = golden["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, want_ids);
    let opts = RunOptions::default();
    let target = model
        .resolve_target(&tokens, &"similarity".parse().unwrap(), Some(&b), &opts)
        .unwrap();
    let e = model.input_embeddings(&tokens).unwrap();
    let g = model
        .gradient(&tokens, e.view(), &target, &opts, false)
        .unwrap();
    let want_value = golden["value"].as_f64().unwrap();
    assert!(
        (g.value - want_value).abs() < 1e-5,
        "{} vs {want_value}",
        g.value
    );
    let want: Vec<Vec<f64>> = golden["grad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let max_t = want.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut max_err = 0.0f64;
    for (row, want_row) in g.d_embeds.rows().into_iter().zip(&want) {
        for (&s, &t) in row.iter().zip(want_row) {
            max_err = max_err.max((f64::from(s) - t).abs());
        }
    }
    eprintln!(
        "MiniLM similarity: max|s − t| / max|t| = {:.2e}",
        max_err / max_t
    );
    assert!(max_err <= 1e-3 * max_t, "{max_err} vs max |t| {max_t}");
}

#[test]
fn engine_gradients_do_not_depend_on_the_thread_count_at_49_and_97_tokens() {
    // Random transformers past the 48-token threshold (the fixtures stop at 64 positions):
    // grouped-query RoPE with RMSNorm and a gated MLP, and post-LN ALiBi with a window.
    let gqa = RandomSetup {
        seed: 14,
        heads: 4,
        kv_div: 2,
        d_head: 8,
        layers: 2,
        placement: NormPlacement::Pre,
        position: 1,
        rms: true,
        gated: true,
        causal: true,
        biases: true,
    };
    let post = RandomSetup {
        placement: NormPlacement::Post,
        position: 2,
        rms: false,
        gated: false,
        causal: false,
        kv_div: 1,
        seed: 13,
        ..gqa.clone()
    };
    for (setup, spec) in [(gqa, "none"), (post, "window:7")] {
        let t = random_transformer(&setup);
        for n in [49, 97] {
            let mut r = Lcg(n as u64);
            let x = r.mat(n, t.d_model(), 1.0);
            let w = r.mat(n, t.d_model(), 1.0);
            let run = |threads| {
                let opts = RunOptions {
                    threads,
                    mask: MaskSpec::parse(spec).unwrap(),
                    ..RunOptions::default()
                };
                let (_, tape) = t.forward_taped(x.clone(), &vec![false; n], &opts).unwrap();
                t.backward(&tape, w.clone(), true).unwrap()
            };
            let one = run(Some(1));
            for threads in [None, Some(4)] {
                assert_eq!(run(threads), one, "{setup:?} {n} tokens {threads:?}");
            }
            // A tape without the probabilities (as for inputs too long to keep them) makes the
            // backward pass recompute them, to the same bits.
            let opts = RunOptions {
                mask: MaskSpec::parse(spec).unwrap(),
                ..RunOptions::default()
            };
            let (_, lean) = t
                .forward_taped_with(x.clone(), &vec![false; n], &opts, 0)
                .unwrap();
            let (_, kept) = t.forward_taped(x.clone(), &vec![false; n], &opts).unwrap();
            assert_eq!(
                t.backward(&lean, w.clone(), true).unwrap(),
                t.backward(&kept, w.clone(), true).unwrap(),
                "{setup:?} {n} tokens: recomputed and kept probabilities"
            );
        }
    }
}

/// A batched taped pass (several sequences of the same tokens stacked, as integrated gradients
/// runs its steps) gives each sequence the bits of a pass over it alone: hidden states and
/// input gradients, on 1 and 2 threads, with kept and recomputed probabilities, under
/// grouped-query RoPE with ablations and a dimension subset, and post-LN ALiBi with a window.
#[test]
fn batched_gradients_are_each_sequence_alone_to_the_bit() {
    let gqa = RandomSetup {
        seed: 21,
        heads: 4,
        kv_div: 2,
        d_head: 8,
        layers: 2,
        placement: NormPlacement::Pre,
        position: 1,
        rms: true,
        gated: true,
        causal: true,
        biases: true,
    };
    let post = RandomSetup {
        placement: NormPlacement::Post,
        position: 2,
        rms: false,
        gated: false,
        causal: false,
        kv_div: 1,
        seed: 22,
        ..gqa.clone()
    };
    let edits = vec![
        Ablation {
            layer_idx: 0,
            head_idx: 1,
            mode: AblationMode::Mean,
        },
        Ablation {
            layer_idx: 1,
            head_idx: 2,
            mode: AblationMode::Zero,
        },
    ];
    for (setup, spec, ablations) in [(gqa, "none", edits), (post, "window:5", Vec::new())] {
        let t = random_transformer(&setup);
        let d = t.d_model();
        // 37 tokens: past the 32-token threshold alone, and not a multiple of a row strip.
        let n = 37;
        let mut r = Lcg(setup.seed);
        let xs: Vec<_> = (0..3).map(|_| r.mat(n, d, 1.0)).collect();
        let ws: Vec<_> = (0..3).map(|_| r.mat(n, d, 1.0)).collect();
        let stack = |parts: &[Array2<f32>]| {
            let views: Vec<_> = parts.iter().map(|m| m.view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views).unwrap()
        };
        let (x, w) = (stack(&xs), stack(&ws));
        for threads in [Some(1), None] {
            for budget in [0, usize::MAX] {
                let opts = RunOptions {
                    threads,
                    mask: MaskSpec::parse(spec).unwrap(),
                    ablations: ablations.clone(),
                    dims: vec![DimSubset {
                        layer_idx: 1,
                        head_idx: 0,
                        dims: vec![0, 3, 5],
                    }],
                    ..RunOptions::default()
                };
                let pad = vec![false; n];
                let (hidden, tape) = t
                    .forward_taped_with(x.clone(), &pad, &opts, budget)
                    .unwrap();
                let back = t.backward(&tape, w.clone(), false).unwrap();
                assert!(back.relevance.is_none());
                for (i, (xi, wi)) in xs.iter().zip(&ws).enumerate() {
                    let rows = ndarray::s![i * n..(i + 1) * n, ..];
                    let (h1, tape1) = t
                        .forward_taped_with(xi.clone(), &pad, &opts, budget)
                        .unwrap();
                    let b1 = t.backward(&tape1, wi.clone(), false).unwrap();
                    let what =
                        format!("{setup:?} sequence {i}, {threads:?} threads, budget {budget}");
                    assert_eq!(hidden.slice(rows), h1, "hidden, {what}");
                    assert_eq!(back.d_input.slice(rows), b1.d_input, "gradient, {what}");
                }
                // Relevance is one sequence's: a batch asks for it in vain, with an error.
                assert!(t.backward(&tape, w.clone(), true).is_err());
            }
        }
        // Rows that are not whole sequences are an error, not a panic.
        let short = x.slice(ndarray::s![..2 * n - 1, ..]).to_owned();
        assert!(
            t.forward_taped(short, &vec![false; n], &RunOptions::default())
                .is_err()
        );
    }
}

/// ∂T/∂e against torch autograd in float64 (tests/fixtures/saliency/make_saliency_fixtures.py):
/// every case of the bert_mlm, gpt2 and llama references (and MiniLM's when
/// ATTNVIZ_MINILM_DIR is set), with the target and T resolved here on the fixture's input ids.
#[test]
fn gradients_match_torch_autograd_on_the_saliency_fixtures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut models: Vec<(&str, std::path::PathBuf)> = vec![
        ("bert_mlm", root.join("bert_mlm")),
        ("gpt2", root.join("gpt2")),
        ("llama", root.join("llama")),
    ];
    if let Ok(dir) = std::env::var("ATTNVIZ_MINILM_DIR") {
        models.push(("minilm", dir.into()));
    }
    for (name, dir) in models {
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("saliency/{name}.json"))).unwrap(),
        )
        .unwrap();
        let model = LoadedModel::checkpoint(&dir, Default::default()).unwrap();
        let ckpt = model.as_checkpoint().unwrap();
        for case in reference["cases"].as_array().unwrap() {
            let ids: Vec<u32> = case["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let tokens = ckpt.tokens_from_ids(&ids);
            let t = &case["target"];
            let kind = t["kind"].as_str().unwrap();
            let field = |k: &str| t[k].as_u64().map(|v| v.to_string());
            let spec = match kind {
                "similarity" => "similarity".to_owned(),
                "contrast" => format!(
                    "contrast:{}:{}:{}",
                    field("position").unwrap(),
                    field("token").unwrap(),
                    field("foil").unwrap()
                ),
                _ => format!(
                    "{kind}:{}:{}",
                    field("position").unwrap(),
                    field("token").unwrap()
                ),
            };
            let b = t["text_b"].as_str().map(|s| ckpt.tokenize(s).unwrap());
            let opts = RunOptions::default();
            let target = model
                .resolve_target(&tokens, &spec.parse().unwrap(), b.as_deref(), &opts)
                .unwrap();
            let e = model.input_embeddings(&tokens).unwrap();
            let g = model
                .gradient(&tokens, e.view(), &target, &opts, false)
                .unwrap();
            let want_value = t["value"].as_f64().unwrap();
            assert!(
                (g.value - want_value).abs() <= 1e-5 * want_value.abs().max(1.0),
                "{name} {spec}: T {} vs torch {want_value}",
                g.value
            );
            let want = case["d_embeds"].as_array().unwrap();
            let mut max_t = 0.0f64;
            let mut max_err = 0.0f64;
            for (row, want_row) in g.d_embeds.rows().into_iter().zip(want) {
                for (&s, w) in row.iter().zip(want_row.as_array().unwrap()) {
                    let w = w.as_f64().unwrap();
                    max_t = max_t.max(w.abs());
                    max_err = max_err.max((f64::from(s) - w).abs());
                }
            }
            eprintln!(
                "{name} {spec}: max|s − t| / max|t| = {:.2e}",
                max_err / max_t
            );
            assert!(
                max_t > 0.0 && max_err <= 1e-3 * max_t,
                "{name} {spec}: {max_err} vs {max_t}"
            );
            // Integrated gradients' batched pass: each point's value and gradient are the bits
            // of a pass over that point alone (positions restart per point, BERT's embedding
            // norm and the mlm row replacement apply per point).
            let points: Vec<_> = [1.0f32, 0.5, 0.25].iter().map(|a| &e * *a).collect();
            let batched = model.gradients(&tokens, &points, &target, &opts).unwrap();
            assert_eq!(batched.len(), 3);
            for (point, got) in points.iter().zip(&batched) {
                let alone = model
                    .gradient(&tokens, point.view(), &target, &opts, false)
                    .unwrap();
                assert_eq!(got.value.to_bits(), alone.value.to_bits(), "{name} {spec}");
                assert_eq!(got.d_embeds, alone.d_embeds, "{name} {spec}");
            }
        }
    }
}

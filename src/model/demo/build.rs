//! Building the demo's weights: seeded random blocks, scratch-band writers, the LayerNorm scales
//! the crafted heads are sized for, and the transformer's parts.

use super::*;

/// The LayerNorm scale that the first layer's attention input gets: √d / |x| in pre-LN, 1 else.
pub(super) fn first_layer_scale(cfg: &DemoConfig, layout: &Layout) -> f64 {
    match cfg.norm {
        NormPlacement::Pre => {
            let pos = if cfg.positional.is_additive() {
                layout.position_norm_sq()
            } else {
                0.0
            };
            (cfg.d_model as f64 / (layout.band as f64 + pos)).sqrt()
        }
        NormPlacement::Post | NormPlacement::None => 1.0,
    }
}

/// The LayerNorm scale the last layer's attention input gets, approximately.
pub(super) fn last_layer_scale(cfg: &DemoConfig, layout: &Layout) -> f64 {
    match cfg.norm {
        NormPlacement::Pre | NormPlacement::Post => {
            let pos = if cfg.positional.is_additive() {
                layout.position_norm_sq()
            } else {
                0.0
            };
            (cfg.d_model as f64 / (layout.band as f64 + pos + layout.kc as f64)).sqrt()
        }
        NormPlacement::None => 1.0,
    }
}

/// Random weights with standard deviation `std`. Shape: [rows, cols].
pub(super) fn random_matrix(rng: &mut Rng, rows: usize, cols: usize, std: f32) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || rng.normal() * std)
}

/// A matrix that writes only into the scratch band (from channel `start`), with rows that sum
/// to zero there, so that the residual stays zero-mean. Shape: [rows, d_model].
pub(super) fn scratch_writer(
    rng: &mut Rng,
    rows: usize,
    d_model: usize,
    start: usize,
    std: f32,
) -> Array2<f32> {
    let mut w = Array2::<f32>::zeros((rows, d_model));
    let width = d_model - start;
    for mut row in w.rows_mut() {
        let values: Vec<f32> = (0..width).map(|_| rng.normal() * std).collect();
        let mean = values.iter().sum::<f32>() / width.max(1) as f32;
        for (c, v) in values.into_iter().enumerate() {
            row[start + c] = if width > 1 { v - mean } else { 0.0 };
        }
    }
    w
}

pub(super) fn build_transformer(cfg: &DemoConfig, layout: Option<&Layout>) -> TransformerParts {
    let d = cfg.d_model;
    let (h, dh) = (cfg.heads, cfg.d_head());
    let d_ff = 4 * d;
    // Random q·k logits have a standard deviation of about 2.5 on unit-variance inputs.
    let qk_std = (2.5 / d as f32).sqrt();
    let write_start = layout.map_or(0, Layout::scratch);
    // Without crafted heads, writes still stay small next to the embeddings, so that a model
    // without norms does not blow up its later layers' logits.
    let write_scale = if layout.is_some() {
        SCRATCH_SCALE
    } else {
        0.25
    };
    let build_block = |layer_idx: usize| -> Block {
        let mut rng = Rng::new(cfg.seed, 10, layer_idx as u64);
        let mut attention = SelfAttention {
            wq: random_matrix(&mut rng, d, h * dh, qk_std),
            bq: None,
            wk: random_matrix(&mut rng, d, h * dh, qk_std),
            bk: None,
            wv: random_matrix(&mut rng, d, h * dh, (1.0 / d as f32).sqrt()),
            bv: None,
            wo: scratch_writer(
                &mut rng,
                h * dh,
                d,
                write_start,
                write_scale / ((h * dh) as f32).sqrt(),
            ),
            bo: None,
        };
        if let Some(layout) = layout {
            for head_idx in 0..h {
                if let Some(kind) = crafted_at(cfg, layer_idx, head_idx) {
                    craft_head(cfg, layout, kind, head_idx, &mut attention);
                }
            }
        }
        let mlp = Mlp {
            w_in: random_matrix(&mut rng, d, d_ff, (1.0 / d as f32).sqrt()),
            b_in: None,
            w_gate: None,
            w_out: scratch_writer(
                &mut rng,
                d_ff,
                d,
                write_start,
                write_scale / (d_ff as f32).sqrt(),
            ),
            b_out: None,
            activation: Activation::Gelu,
        };
        Block {
            attention,
            mlp,
            attention_norm: Norm::identity_layer_norm(d, LN_EPS),
            mlp_norm: Norm::identity_layer_norm(d, LN_EPS),
        }
    };
    // Each layer has its own random stream, so layers build independently: odd layers on a
    // second thread (the largest demo has 300M weights). A refused thread only costs speed.
    let mut blocks: Vec<Option<Block>> = (0..cfg.layers).map(|_| None).collect();
    std::thread::scope(|scope| {
        let odd = std::thread::Builder::new()
            .name("demo-build".to_owned())
            .spawn_scoped(scope, || {
                (1..cfg.layers)
                    .step_by(2)
                    .map(|l| (l, build_block(l)))
                    .collect::<Vec<_>>()
            });
        for l in (0..cfg.layers).step_by(2) {
            blocks[l] = Some(build_block(l));
        }
        let odd_blocks = match odd {
            Ok(handle) => handle.join().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for (l, block) in odd_blocks {
            blocks[l] = Some(block);
        }
    });
    let blocks: Vec<Block> = blocks
        .into_iter()
        .enumerate()
        .map(|(l, b)| b.unwrap_or_else(|| build_block(l)))
        .collect();
    let position = match cfg.positional {
        DemoPositional::Rope => AttentionPosition::Rope { theta: 10_000.0 },
        DemoPositional::Alibi => AttentionPosition::Alibi,
        _ => AttentionPosition::None,
    };
    TransformerParts {
        d_model: d,
        heads: h,
        kv_heads: h,
        d_head: dh,
        placement: cfg.norm,
        position,
        causal: false,
        sliding_window: None,
        blocks,
        final_norm: (cfg.norm == NormPlacement::Pre).then(|| Norm::identity_layer_norm(d, LN_EPS)),
    }
}

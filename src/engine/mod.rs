//! The attention engine: tensors in, [`AttentionRun`] out.
//!
//! Pure ndarray f32. No files, no UI. Models build a [`Transformer`] from their weights, turn
//! tokens into embeddings, and call [`Transformer::forward`], which records every layer's and
//! head's attention probabilities.

mod attention;
mod backward;
mod block;
mod gemm;
mod intervene;
mod layers;
mod mask;
pub mod math;
pub mod memory;
mod options;
mod parallel;
mod position;
mod run;
pub mod simd;
mod size;
mod transformer;
mod value_zero;

pub use attention::SelfAttention;
pub use backward::{Backward, Tape};
pub use block::Block;
pub use gemm::PackedMatrix;
pub use intervene::{
    Ablation, AblationMode, Captured, FrozenRows, Interventions, Override, Resume, Site,
};
pub use layers::{Activation, Mlp, Norm, NormPlacement};
pub use mask::{AppliedMask, ArchitectureMask, MaskError, MaskPart, MaskSpec, chunk_by_heads_size};
pub use options::{DimSubset, Mistake, OptionsRecord, RunOptions, ScoreScale};
pub(crate) use parallel::{parallel_map, pool_threads};
pub use position::{
    AttentionPosition, Llama3Scaling, alibi_slopes, apply_rope, llama3_frequencies,
    rope_frequencies,
};
pub use run::{AttentionMaps, AttentionRun, HeadMap, HeadTrace, PositionKind, Trace};
pub use size::ByteSize;
pub use transformer::{ForwardOutput, Transformer, TransformerParts};

/// Errors from a forward pass.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// There were no tokens.
    #[error("nothing to tokenize: the input is empty")]
    NoTokens,
    /// The mask spec is invalid or does not fit the sequence.
    #[error(transparent)]
    Mask(#[from] MaskError),
    /// A layer, head or dimension named in the options does not exist.
    #[error("{0}")]
    OutOfRange(String),
    /// The weights are inconsistent with the model's dimensions.
    #[error("bad weights: {0}")]
    BadWeights(String),
    /// The run would need more memory than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The caller cancelled the run.
    #[error("cancelled")]
    Cancelled,
    /// The options ask for something this computation does not support.
    #[error("{0}")]
    Unsupported(String),
}

/// A developer's switch for comparing two versions of a change in one process, call by call
/// (`examples/interleaved_ab.rs`): while measuring, the code under test reads it
/// (`DEV_SWITCH.load(Relaxed) & 1 != 0`) to pick a version. No committed code reads it, so it
/// changes nothing. On the 2-core KVM development machines, separate benchmark processes
/// could not resolve a few per cent (the same change measured 0.84× and 1.14× in two
/// `benches/ab.py` sittings); calls alternating in one process agreed within about 2 %.
#[doc(hidden)]
pub static DEV_SWITCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

    /// One layer, one head, d_model = d_head = 2, identity Q/K/V, zero output projection and MLP,
    /// no norms: the attention is softmax(x·xᵀ · scale).
    fn identity_model(position: AttentionPosition) -> Transformer {
        let eye = Array2::<f32>::eye(2);
        Transformer::new(TransformerParts {
            d_model: 2,
            heads: 1,
            kv_heads: 1,
            d_head: 2,
            placement: NormPlacement::None,
            position,
            causal: false,
            sliding_window: None,
            blocks: vec![Block {
                attention: SelfAttention {
                    wq: eye.clone(),
                    bq: None,
                    wk: eye.clone(),
                    bk: None,
                    wv: eye,
                    bv: None,
                    wo: Array2::zeros((2, 2)),
                    bo: None,
                },
                mlp: Mlp {
                    w_in: Array2::zeros((2, 1)),
                    b_in: None,
                    w_gate: None,
                    w_out: Array2::zeros((1, 2)),
                    b_out: Some(Array1::zeros(2)),
                    activation: Activation::Gelu,
                },
                attention_norm: Norm::identity_layer_norm(2, 1e-5),
                mlp_norm: Norm::identity_layer_norm(2, 1e-5),
            }],
            final_norm: None,
        })
        .unwrap()
    }

    fn run(model: &Transformer, opts: &RunOptions) -> ForwardOutput {
        let x = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        model.forward(x, &[false; 3], opts, &mut |_| true).unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn three_tokens_d2_hand_computed() {
        // x = [[1,0],[0,1],[1,1]], so x·xᵀ = [[1,0,1],[0,1,1],[1,1,2]].
        // Scale 1/√2, row 0: scores [0.70711, 0, 0.70711]; e^0.70711 = 2.02811,
        // sum = 2·2.02811 + 1 = 5.05622 → [0.40111, 0.19778, 0.40111].
        let model = identity_model(AttentionPosition::None);
        let out = run(&model, &RunOptions::default());
        let map = out.maps.head(0, 0).unwrap();
        assert_close(map.row(0).as_slice().unwrap(), &[0.40111, 0.19778, 0.40111]);

        // Without scaling, row 2: scores [1,1,2]; sum = 2e + e² = 12.82562 → [0.21194, 0.21194, 0.57612].
        let opts = RunOptions {
            scale: ScoreScale::None,
            trace_layer: Some(0),
            ..RunOptions::default()
        };
        let out = run(&model, &opts);
        let map = out.maps.head(0, 0).unwrap();
        assert_close(map.row(2).as_slice().unwrap(), &[0.21194, 0.21194, 0.57612]);
        // Head output row 0 = 0.42232·[1,0] + 0.15536·[0,1] + 0.42232·[1,1] = [0.84464, 0.57768],
        // where row 0's probabilities are [e, 1, e] / (2e + 1).
        let trace = out.trace.unwrap();
        assert_close(
            trace.heads[0].output.row(0).as_slice().unwrap(),
            &[0.84464, 0.57768],
        );
        assert_close(
            trace.heads[0].raw_scores.row(2).as_slice().unwrap(),
            &[1.0, 1.0, 2.0],
        );
    }

    #[test]
    fn causal_and_fully_masked_rows() {
        let model = identity_model(AttentionPosition::None);
        let opts = RunOptions {
            mask: MaskSpec::parse("causal+drop-queries:1").unwrap(),
            ..RunOptions::default()
        };
        let out = run(&model, &opts);
        let map = out.maps.head(0, 0).unwrap();
        // Row 0 can only see itself; row 1 is dropped and all zeros, and flagged.
        assert_eq!(map.row(0).to_vec(), [1.0, 0.0, 0.0]);
        assert_eq!(map.row(1).to_vec(), [0.0, 0.0, 0.0]);
        assert_eq!(out.fully_masked_queries, [1]);
    }

    #[test]
    fn alibi_penalises_distance() {
        // One head: slope 2^-8. Row 0 scores become [0.70711, 0 − 1/256, 0.70711 − 2/256].
        let model = identity_model(AttentionPosition::Alibi);
        let out = run(&model, &RunOptions::default());
        let map = out.maps.head(0, 0).unwrap();
        let e = |x: f32| x.exp();
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let s = [r, -1.0 / 256.0, r - 2.0 / 256.0];
        let sum: f32 = s.iter().map(|&x| e(x)).sum();
        assert_close(map.row(0).as_slice().unwrap(), &s.map(|x| e(x) / sum));
    }

    #[test]
    fn dims_subset_and_bad_options() {
        // Keeping only dimension 0: scores use x[:,0]·x[:,0] = [[1,0,1],[0,0,0],[1,0,1]];
        // row 1 is all zeros, so uniform 1/3.
        let model = identity_model(AttentionPosition::None);
        let opts = RunOptions {
            dims: vec!["0.0=0".parse().unwrap()],
            ..RunOptions::default()
        };
        let out = run(&model, &opts);
        assert_close(
            out.maps.head(0, 0).unwrap().row(1).as_slice().unwrap(),
            &[1.0 / 3.0; 3],
        );

        let bad = RunOptions {
            dims: vec!["0.0=5".parse().unwrap()],
            ..RunOptions::default()
        };
        let x = array![[1.0f32, 0.0]];
        assert!(matches!(
            model.forward(x, &[false], &bad, &mut |_| true),
            Err(EngineError::OutOfRange(_))
        ));
        let cancelled = model.forward(
            array![[1.0f32, 0.0]],
            &[false],
            &RunOptions::default(),
            &mut |_| false,
        );
        assert!(matches!(cancelled, Err(EngineError::Cancelled)));
    }

    #[test]
    fn layer_norms_grow_without_norms() {
        // Two post-LN layers whose attention output projection is the identity (d = 2) and
        // whose MLP adds nothing: x ← LN(x + attn(x)). With the norm every row has norm √2
        // (LayerNorm of two different numbers is ±1); without it, each layer adds the head's
        // output, a convex combination of the rows, so the norms grow.
        let mut parts = identity_model(AttentionPosition::None).into_parts();
        parts.placement = NormPlacement::Post;
        parts.blocks[0].attention.wo = Array2::eye(2);
        parts.blocks.push(parts.blocks[0].clone());
        let model = Transformer::new(parts).unwrap();
        let x = array![[3.0f32, 1.0], [1.0, 2.0], [2.0, 5.0]];
        let run = |mistakes: Vec<Mistake>| {
            let opts = RunOptions {
                keep_layer_norms: true,
                mistakes,
                ..RunOptions::default()
            };
            model
                .forward(x.clone(), &[false; 3], &opts, &mut |_| true)
                .unwrap()
                .layer_norms
                .unwrap()
        };
        let with = run(Vec::new());
        for n in &with {
            assert!((n - 2f32.sqrt()).abs() < 1e-3, "{with:?}");
        }
        let without = run(vec![Mistake::NoLayerNorm]);
        assert_eq!(without.len(), 2);
        assert!(without[1] > without[0] && without[0] > 3.0, "{without:?}");
        // Without keep_layer_norms nothing is recorded.
        let out = model
            .forward(x.clone(), &[false; 3], &RunOptions::default(), &mut |_| {
                true
            })
            .unwrap();
        assert!(out.layer_norms.is_none());
    }

    #[test]
    fn constructor_checks_gate_biases_and_final_norm() {
        // d_model 2, d_ff 1 (see identity_model): each edit below breaks one promised shape.
        let good = identity_model(AttentionPosition::None).into_parts();
        let rebuilt = Transformer::new(good.clone()).unwrap();
        assert_eq!(rebuilt.parts(), &good);
        type Edit = fn(&mut TransformerParts);
        let edits: [(&str, Edit); 5] = [
            ("mlp.w_gate", |p| {
                p.blocks[0].mlp.w_gate = Some(Array2::zeros((2, 3)))
            }),
            ("mlp.b_in", |p| {
                p.blocks[0].mlp.b_in = Some(Array1::zeros(2))
            }),
            ("mlp.b_out", |p| {
                p.blocks[0].mlp.b_out = Some(Array1::zeros(3))
            }),
            ("mlp norm", |p| {
                p.blocks[0].mlp_norm = Norm::identity_layer_norm(3, 1e-5)
            }),
            ("final norm", |p| {
                p.final_norm = Some(Norm::identity_layer_norm(4, 1e-5));
            }),
        ];
        for (name, edit) in edits {
            let mut parts = good.clone();
            edit(&mut parts);
            match Transformer::new(parts) {
                Err(EngineError::BadWeights(msg)) => assert!(msg.contains(name), "{name}: {msg}"),
                other => panic!("{name}: expected bad weights, got {other:?}"),
            }
        }
    }
}

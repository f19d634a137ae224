#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unit tests on a hand-made differentiable function whose every score is known exactly.

use super::*;
use crate::engine::{AttentionMaps, RunOptions};
use crate::grad::{Differentiable, GradError, Gradient, ResolvedTarget, SpecialToken, TargetKind};
use crate::tokenize::{Token, VocabStyle};
use ndarray::{Array2, ArrayView2, array};

/// T(e) = Σ_i (2·e_{i,0} − e_{i,1} + 0.5·e_{i,0}²) + extra·e_{P,1} over 2-wide embeddings:
/// `a` = (1, 2), `b` = (−1, 0.5), `c` = (0, −3), `[CLS]` = (0, 0), `[MASK]` = (0.5, 0.5).
/// ∂T/∂e_i = (2 + e_{i,0}, −1) (+ (0, extra) at P). No unknown or padding token.
struct Toy {
    extra: f64,
    relevance: Vec<Array2<f32>>,
}

fn toy() -> Toy {
    Toy {
        extra: 0.0,
        relevance: Vec::new(),
    }
}

fn embedding(text: &str) -> [f32; 2] {
    match text {
        "a" => [1.0, 2.0],
        "b" => [-1.0, 0.5],
        "c" => [0.0, -3.0],
        "[MASK]" => [0.5, 0.5],
        _ => [0.0, 0.0],
    }
}

fn token(text: &str) -> Token {
    Token::from_text(text)
}

fn tokens(texts: &[&str]) -> Vec<Token> {
    texts.iter().map(|t| token(t)).collect()
}

impl Differentiable for Toy {
    fn supported_targets(&self) -> Vec<TargetKind> {
        vec![TargetKind::Logprob, TargetKind::Mlm, TargetKind::Similarity]
    }

    fn special_token(&self, which: SpecialToken) -> Option<Token> {
        (which == SpecialToken::Mask).then(|| token("[MASK]"))
    }

    fn input_embeddings(&self, tokens: &[Token]) -> Result<Array2<f32>, GradError> {
        let mut e = Array2::zeros((tokens.len(), 2));
        for (i, t) in tokens.iter().enumerate() {
            let v = embedding(&t.text);
            e[[i, 0]] = v[0];
            e[[i, 1]] = v[1];
        }
        Ok(e)
    }

    fn resolve_target(
        &self,
        _tokens: &[Token],
        _spec: &crate::grad::TargetSpec,
        _text_b: Option<&[Token]>,
        _opts: &RunOptions,
    ) -> Result<ResolvedTarget, GradError> {
        Err(GradError::BadTarget("not used".into()))
    }

    fn target_value(
        &self,
        _tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        _opts: &RunOptions,
    ) -> Result<f64, GradError> {
        let mut t = 0.0;
        for row in embeds.rows() {
            let (x, y) = (f64::from(row[0]), f64::from(row[1]));
            t += 2.0 * x - y + 0.5 * x * x;
        }
        if let Some(p) = target.position {
            t += self.extra * f64::from(embeds[[p, 1]]);
        }
        Ok(t)
    }

    fn gradient(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        opts: &RunOptions,
        attention_relevance: bool,
    ) -> Result<Gradient, GradError> {
        let mut d = Array2::zeros(embeds.raw_dim());
        for (i, row) in embeds.rows().into_iter().enumerate() {
            d[[i, 0]] = 2.0 + row[0];
            d[[i, 1]] = -1.0;
        }
        if let Some(p) = target.position {
            d[[p, 1]] += self.extra as f32;
        }
        Ok(Gradient {
            value: self.target_value(tokens, embeds, target, opts)?,
            d_embeds: d,
            attention_relevance: attention_relevance.then(|| self.relevance.clone()),
        })
    }
}

fn target(kind: TargetKind, position: Option<usize>) -> ResolvedTarget {
    ResolvedTarget {
        kind,
        position,
        token: None,
        foil: None,
        text_b: None,
        reference: None,
        value: 0.0,
    }
}

fn close(a: &[f32], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

const ABC: [&str; 3] = ["a", "b", "c"];

#[test]
fn gradient_and_input_x_gradient_are_exact() {
    let m = toy();
    let t = target(TargetKind::Logprob, Some(2));
    let opts = RunOptions::default();
    // ∂T/∂e: a (2+1, −1) → √10; b (2−1, −1) → √2; c (2+0, −1) → √5.
    let g = gradient(&m, &tokens(&ABC), &t, &opts).unwrap();
    close(&g, &[10f64.sqrt(), 2f64.sqrt(), 5f64.sqrt()]);
    // e·∂T/∂e: a 1·3 + 2·(−1) = 1; b −1·1 + 0.5·(−1) = −1.5; c 0·2 + (−3)(−1) = 3.
    let ixg = input_x_gradient(&m, &tokens(&ABC), &t, &opts).unwrap();
    close(&ixg, &[1.0, -1.5, 3.0]);
}

#[test]
fn integrated_gradients_match_the_right_riemann_sum_exactly() {
    let m = toy();
    let t = target(TargetKind::Logprob, Some(2));
    let opts = RunOptions::default();
    let mut calls = Vec::new();
    let ig = integrated_gradients(
        &m,
        "toy",
        &tokens(&ABC),
        &t,
        &opts,
        Baseline::Zero,
        4,
        PointBatches::ONE,
        &mut |f| {
            calls.push(f);
            true
        },
    )
    .unwrap();
    // Zero baseline, m = 4: the gradient at α·e is (2 + α·e_0, −1), and the right sum averages
    // α = k/4 to (m+1)/(2m) = 5/8. s_i = 2e_0 − e_1 + e_0²·5/8:
    // a 2 − 2 + 0.625 = 0.625; b −2 − 0.5 + 0.625 = −1.875; c 0 + 3 + 0 = 3.
    close(&ig.scores, &[0.625, -1.875, 3.0]);
    // Σ s = 1.75; T(e) − T(0) = (0.5 − 2 + 3) − 0 = 1.5; gap = 0.25 = 0.5·Σ e_0² / m.
    assert!((ig.completeness_gap - 0.25).abs() < 1e-6, "{ig:?}");
    assert_eq!(ig.baseline_value, 0.0);
    assert_eq!(calls, vec![0.25, 0.5, 0.75, 1.0]);

    // Mask baseline b = (0.5, 0.5): Δ = a (0.5, 1.5), b (−1.5, 0), c (−0.5, −3.5); the gradient
    // at b + αΔ is (2.5 + αΔ_0, −1), so s_i = Δ_0(2.5 + Δ_0·5/8) − Δ_1:
    // a 0.5·2.8125 − 1.5 = −0.09375; b −1.5·1.5625 = −2.34375; c −0.5·2.1875 + 3.5 = 2.40625.
    let ig = integrated_gradients(
        &m,
        "toy",
        &tokens(&ABC),
        &t,
        &opts,
        Baseline::Mask,
        4,
        PointBatches::ONE,
        &mut |_| true,
    )
    .unwrap();
    close(&ig.scores, &[-0.09375, -2.34375, 2.40625]);
    // T(b) = 3·(1 − 0.5 + 0.125) = 1.875; gap = −0.03125 − (1.5 − 1.875) = 0.34375
    // (= 0.5·Σ Δ_0² / m = 0.5·2.75/4).
    assert!((ig.baseline_value - 1.875).abs() < 1e-6);
    assert!((ig.completeness_gap - 0.34375).abs() < 1e-6, "{ig:?}");

    // The gap shrinks as 1/m: 0.5·2/m at 64 steps is 1/64.
    let ig = integrated_gradients(
        &m,
        "toy",
        &tokens(&ABC),
        &t,
        &opts,
        Baseline::Zero,
        64,
        PointBatches::ONE,
        &mut |_| true,
    )
    .unwrap();
    assert!((ig.completeness_gap - 1.0 / 64.0).abs() < 1e-5, "{ig:?}");
}

#[test]
fn integrated_gradients_are_the_same_bits_in_any_batches() {
    let m = toy();
    let t = target(TargetKind::Logprob, Some(2));
    let opts = RunOptions::default();
    let run = |batches: PointBatches| {
        let mut calls = Vec::new();
        let ig = integrated_gradients(
            &m,
            "toy",
            &tokens(&ABC),
            &t,
            &opts,
            Baseline::Mask,
            7,
            batches,
            &mut |f| {
                calls.push(f);
                true
            },
        )
        .unwrap();
        (ig, calls)
    };
    let (one, calls) = run(PointBatches::ONE);
    assert_eq!(calls.len(), 7);
    for (stacked, side_by_side, rounds) in [(2, 1, 4), (3, 2, 2), (8, 1, 1), (1, 2, 4)] {
        let (ig, calls) = run(PointBatches {
            stacked,
            side_by_side,
        });
        assert_eq!(ig, one, "{stacked} stacked, {side_by_side} side by side");
        // Progress after each round of stacked × side-by-side points, the last one short.
        assert_eq!(calls.len(), rounds);
        assert_eq!(calls.last(), Some(&1.0));
    }
}

#[test]
fn point_batches_stack_short_inputs_and_spread_passes_over_threads() {
    let mb = 1u64 << 20;
    let decide = |tokens, steps, threads, memory| {
        let b = PointBatches::decide(tokens, steps, threads, 100 * mb, memory);
        (b.stacked, b.side_by_side)
    };
    // 128 / 16 = 8 points stacked; 32 steps make 4 passes, two at a time on 2 threads.
    assert_eq!(decide(16, 32, 2, u64::MAX), (8, 2));
    // 128 / 48 = 2 stacked; at 128 tokens and above, one point per pass.
    assert_eq!(decide(48, 32, 2, u64::MAX), (2, 2));
    assert_eq!(decide(128, 32, 2, u64::MAX), (1, 2));
    assert_eq!(decide(2000, 32, 4, u64::MAX), (1, 4));
    // Never more stacked than steps; one pass is not split over threads.
    assert_eq!(decide(4, 3, 2, u64::MAX), (3, 1));
    assert_eq!(decide(128, 32, 1, u64::MAX), (1, 1));
    // Memory for 5 points of 100 MB: side by side goes first (8 × 2 → 8 × 1 = 800 MB, still
    // too much), then the stack (5 × 1 = 500 MB).
    assert_eq!(decide(16, 32, 2, 500 * mb), (5, 1));
    // Too little for even one: one point still runs.
    assert_eq!(decide(16, 32, 2, 0), (1, 1));
}

#[test]
fn a_missing_baseline_token_and_cancelling_are_errors() {
    let m = toy();
    let t = target(TargetKind::Logprob, Some(2));
    let opts = RunOptions::default();
    let err = integrated_gradients(
        &m,
        "toy",
        &tokens(&ABC),
        &t,
        &opts,
        Baseline::Pad,
        4,
        PointBatches::ONE,
        &mut |_| true,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "the pad baseline needs the tokenizer's padding token, and toy has none"
    );
    let err = integrated_gradients(
        &m,
        "toy",
        &tokens(&ABC),
        &t,
        &opts,
        Baseline::Zero,
        4,
        PointBatches::ONE,
        &mut |f| f < 0.5,
    )
    .unwrap_err();
    assert!(matches!(err, AttributionError::Cancelled));
}

#[test]
fn attention_gradient_accumulates_the_relevance_layer_by_layer() {
    let mut m = toy();
    m.relevance = vec![
        array![[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 1.0, 0.0]],
        array![[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]],
    ];
    let opts = RunOptions::default();
    // R = I + Ā_0 = [[1,0,0],[0.5,1,0],[0,1,1]]; Ā_1·R has one row (2):
    // 0.5·(1,0,0) + 0.5·(0.5,1,0) = (0.75, 0.5, 0), so R's row 2 is (0.75, 1.5, 1) and the
    // scores, row 2 of R − I, are (0.75, 1.5, 0): the target's own 1 is left out.
    let s = attention_gradient(
        &m,
        &tokens(&ABC),
        &target(TargetKind::Logprob, Some(2)),
        &opts,
    )
    .unwrap();
    close(&s, &[0.75, 1.5, 0.0]);
    // similarity: the mean of the rows of R − I: (0,0,0), (0.5,0,0), (0.75,1.5,0).
    let s = attention_gradient(
        &m,
        &tokens(&ABC),
        &target(TargetKind::Similarity, None),
        &opts,
    )
    .unwrap();
    close(&s, &[1.25 / 3.0, 0.5, 0.0]);
}

#[test]
fn occlusion_is_known_by_construction() {
    let m = toy();
    let opts = RunOptions::default();
    let toks = tokens(&["[CLS]", "a", "b", "c"]);
    let t = target(TargetKind::Logprob, Some(2));
    // T is a sum of per-token terms f(e_i) = 2x − y + 0.5x²: a 0.5, b −2, c 3, [MASK] 0.625.
    // Masking token i changes T by f(e_i) − 0.625; [CLS] is special and stays.
    let (how, s) = occlusion(&m, "toy", &toks, &t, &opts, None, &mut |_| true).unwrap();
    assert_eq!(how, Occlude::Mask);
    close(&s, &[0.0, -0.125, -2.625, 2.375]);
    // Removing token i takes its whole term away.
    let (_, s) = occlusion(
        &m,
        "toy",
        &toks,
        &t,
        &opts,
        Some(Occlude::Remove),
        &mut |_| true,
    )
    .unwrap();
    close(&s, &[0.0, 0.5, -2.0, 3.0]);
    let err = occlusion(&m, "toy", &toks, &t, &opts, Some(Occlude::Unk), &mut |_| {
        true
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown token"), "{err}");
    // mlm: the masked position P = 2 is never occluded.
    let (_, s) = occlusion(
        &m,
        "toy",
        &toks,
        &target(TargetKind::Mlm, Some(2)),
        &opts,
        None,
        &mut |_| true,
    )
    .unwrap();
    close(&s, &[0.0, -0.125, 0.0, 2.375]);
}

#[test]
fn removal_keeps_the_target_at_the_original_token() {
    // With extra = 1, T also reads e_{P,1}: T = 0 + 0.5 − 2 + 3 + 0.5 (b's y) = 2 at P = 2 (b).
    let m = Toy {
        extra: 1.0,
        relevance: Vec::new(),
    };
    let opts = RunOptions::default();
    let toks = tokens(&["[CLS]", "a", "b", "c"]);
    let t = target(TargetKind::Logprob, Some(2));
    let (_, s) = occlusion(
        &m,
        "toy",
        &toks,
        &t,
        &opts,
        Some(Occlude::Remove),
        &mut |_| true,
    )
    .unwrap();
    // Remove a: P moves to 1, still b: T = −2 + 3 + 0.5 = 1.5, score 0.5 (it would be 4 if P
    // stayed at 2, now c). Remove b itself: P − 1 = a, T = 0.5 + 3 + 2 = 5.5, score −3.5.
    // Remove c: T = 0.5 − 2 + 0.5 = −1, score 3.
    close(&s, &[0.0, 0.5, -3.5, 3.0]);
}

fn maps() -> AttentionMaps {
    let h0 = array![[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let third = 1.0 / 3.0;
    let h1 = array![[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [third, third, third]];
    AttentionMaps::from_heads(2, 2, 3, vec![h0.clone(), h1.clone(), h0, h1]).unwrap()
}

#[test]
fn attention_and_rollout_read_the_maps() {
    let m = maps();
    let t = target(TargetKind::Logprob, Some(2));
    // Head mean row 2: ((0 + 1/3)/2, (1 + 1/3)/2, (0 + 1/3)/2) = (1/6, 2/3, 1/6).
    close(&attention(&m, &t), &[1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0]);
    // W = 0.5·mean + 0.5·I: rows (1,0,0), (0.375,0.625,0), (1/12,1/3,7/12); R = W·W, row 2 =
    // (1/12)(1,0,0) + (1/3)(0.375,0.625,0) + (7/12)(1/12,1/3,7/12)
    // = (1/12 + 0.125 + 7/144, 0.625/3 + 7/36, 49/144).
    let r2 = [
        1.0 / 12.0 + 0.125 + 7.0 / 144.0,
        0.625 / 3.0 + 7.0 / 36.0,
        49.0 / 144.0,
    ];
    close(&rollout(&m, &t), &r2);
    // similarity: the mean of the head-mean rows (1,0,0), (0.75,0.25,0), (1/6,2/3,1/6).
    let s = attention(&m, &target(TargetKind::Similarity, None));
    close(
        &s,
        &[
            (1.0 + 0.75 + 1.0 / 6.0) / 3.0,
            (0.25 + 2.0 / 3.0) / 3.0,
            1.0 / 18.0,
        ],
    );
}

#[test]
fn rank_correlation_is_spearman() {
    assert_eq!(
        rank_correlation(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
        Some(1.0)
    );
    assert_eq!(
        rank_correlation(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]),
        Some(-1.0)
    );
    // Ties share ranks: a → (1, 2.5, 2.5, 4), b → (1, 2, 3, 4); deviations from 2.5:
    // (−1.5, 0, 0, 1.5) and (−1.5, −0.5, 0.5, 1.5); ρ = 4.5 / √(4.5·5) = 0.9486833.
    let r = rank_correlation(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert!((r - 4.5 / 22.5f64.sqrt()).abs() < 1e-12, "{r}");
    assert_eq!(rank_correlation(&[1.0, 1.0], &[1.0, 2.0]), None);
    assert_eq!(rank_correlation(&[1.0], &[1.0]), None);
    assert_eq!(rank_correlation(&[1.0, 2.0], &[1.0]), None);
    assert_eq!(rank_correlation(&[1.0, f32::NAN], &[1.0, 2.0]), None);
}

#[test]
fn words_join_pieces_by_spans_or_vocabulary_style() {
    let wp = VocabStyle::WordPiece {
        prefix: "##".into(),
    };
    let toks = tokens(&["[CLS]", "play", "##ing", "ball", "[SEP]"]);
    assert_eq!(
        word_groups(&toks, &wp),
        vec![vec![0], vec![1, 2], vec![3], vec![4]]
    );
    let (s, labels) = aggregate_words(&toks, &[0.5, 1.0, 2.0, 4.0, 8.0], &wp);
    assert_eq!(s, vec![0.5, 3.0, 4.0, 8.0]);
    assert_eq!(labels, vec!["[CLS]", "playing", "ball", "[SEP]"]);
    let bl = tokens(&["The", "Ġcat", "s", "Ġsat"]);
    assert_eq!(
        word_groups(&bl, &VocabStyle::ByteLevel),
        vec![vec![0], vec![1, 2], vec![3]]
    );
    // Spans win over the style: "mat" and "." touch (bytes 0..3, 3..4); "ok" is after a space.
    let mut spanned = tokens(&["mat", ".", "ok"]);
    spanned[0].byte_span = Some((0, 3));
    spanned[1].byte_span = Some((3, 4));
    spanned[2].byte_span = Some((5, 7));
    assert_eq!(
        word_groups(&spanned, &VocabStyle::Plain),
        vec![vec![0, 1], vec![2]]
    );
}

#[test]
fn names_round_trip_and_requests_are_checked() {
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>().unwrap(), *m);
    }
    assert_eq!(Method::ALL.len(), 7);
    assert!(
        "saliency"
            .parse::<Method>()
            .unwrap_err()
            .contains("integrated-gradients")
    );
    assert!(Method::Occlusion.is_signed() && !Method::Rollout.is_signed());
    let spec = |s: &str| s.parse::<crate::grad::TargetSpec>().unwrap();
    let mut req = AttributeRequest::new(Method::Gradient, spec("logprob"));
    assert!(req.validate().is_ok());
    req.steps = Some(8);
    // The reason names no flag: the CLI adds `--steps`, the app its `steps` field.
    let err = req.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "a step count only applies to integrated-gradients, not to gradient"
    );
    assert!(matches!(
        err,
        AttributionError::Setting {
            setting: RequestSetting::Steps,
            ..
        }
    ));
    req.method = Method::IntegratedGradients;
    assert!(req.validate().is_ok());
    let req = AttributeRequest::new(Method::Gradient, spec("similarity"));
    assert!(matches!(
        req.validate(),
        Err(AttributionError::Setting {
            setting: RequestSetting::TextB,
            ..
        })
    ));
    let mut req = AttributeRequest::new(Method::Gradient, spec("logprob:3"));
    req.generate = Some(2);
    assert!(matches!(
        req.validate(),
        Err(AttributionError::Setting {
            setting: RequestSetting::Generate,
            ..
        })
    ));
}

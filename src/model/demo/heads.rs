//! The crafted heads: each overwrites one head's query, key, value and output weights with a
//! readable pattern.

use super::*;

/// Overwrites one head's slice of the attention weights with a crafted pattern.
pub(super) fn craft_head(
    cfg: &DemoConfig,
    layout: &Layout,
    kind: CraftedHead,
    head_idx: usize,
    a: &mut SelfAttention,
) {
    let d = cfg.d_model;
    let dh = cfg.d_head();
    let col0 = head_idx * dh;
    // Clear this head's query and key columns; the value and output stay random unless set below.
    for c in col0..col0 + dh {
        a.wq.column_mut(c).fill(0.0);
        a.wk.column_mut(c).fill(0.0);
    }
    let mut bq = a.bq.take().unwrap_or_else(|| Array1::zeros(cfg.heads * dh));
    let mut bk = a.bk.take().unwrap_or_else(|| Array1::zeros(cfg.heads * dh));
    let sqrt_dh = (dh as f64).sqrt();
    let s0 = first_layer_scale(cfg, layout);
    // The fastest `count` pairs of the position band.
    let fast_pairs = |count: usize| -> Vec<usize> { (0..count.min(layout.pairs)).collect() };
    let sinusoidal = cfg.positional == DemoPositional::Sinusoidal;
    let learned = cfg.positional == DemoPositional::Learned;
    let rope = cfg.positional == DemoPositional::Rope;

    match kind {
        CraftedHead::PreviousToken | CraftedHead::SelfToken if rope => {
            // Constant q and k, rotated by RoPE: q·k = Σ_k cos(θ_k (j − i + shift)).
            let shift = if kind == CraftedHead::PreviousToken {
                1.0
            } else {
                0.0
            };
            let freqs = crate::engine::rope_frequencies(dh, 10_000.0);
            let freqs64: Vec<f64> = freqs.iter().map(|&f| f64::from(f)).collect();
            let alpha = TARGET_GAP * sqrt_dh / cosine_sum_gap(&freqs64);
            let half = dh / 2;
            for (k, &theta) in freqs64.iter().enumerate() {
                bq[col0 + k] = alpha as f32;
                bk[col0 + k] = (theta * shift).cos() as f32;
                bk[col0 + k + half] = (theta * shift).sin() as f32;
            }
        }
        CraftedHead::PreviousToken | CraftedHead::SelfToken => {
            // q = α·R(−shift·ω)(sin ωi, cos ωi), k = (sin ωj, cos ωj): q·k = α Σ cos(ω(i − shift − j)).
            let shift = if kind == CraftedHead::PreviousToken {
                1.0
            } else {
                0.0
            };
            if learned && kind == CraftedHead::SelfToken {
                let width = layout.learned_width(dh);
                let alpha = TARGET_GAP * sqrt_dh / (s0 * s0 * layout.position_norm_sq() * 0.25);
                for c in 0..width {
                    a.wq[(layout.position() + c, col0 + c)] = alpha as f32;
                    a.wk[(layout.position() + c, col0 + c)] = 1.0;
                }
            } else {
                let pairs = fast_pairs(dh / 2);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let alpha = TARGET_GAP * sqrt_dh / (s0 * s0 * cosine_sum_gap(&freqs));
                for (slot, (&f, &w)) in pairs.iter().zip(&freqs).enumerate() {
                    let (sin_ch, cos_ch) = (layout.sin_channel(f), layout.sin_channel(f) + 1);
                    let (qs, qc) = (col0 + 2 * slot, col0 + 2 * slot + 1);
                    let (sw, cw) = ((w * shift).sin(), (w * shift).cos());
                    a.wq[(sin_ch, qs)] = (alpha * cw) as f32;
                    a.wq[(cos_ch, qs)] = (-alpha * sw) as f32;
                    a.wq[(sin_ch, qc)] = (alpha * sw) as f32;
                    a.wq[(cos_ch, qc)] = (alpha * cw) as f32;
                    a.wk[(sin_ch, qs)] = 1.0;
                    a.wk[(cos_ch, qc)] = 1.0;
                }
            }
            if kind == CraftedHead::PreviousToken {
                // Copy the content key of the attended token into the previous band.
                for c in 0..a.wv.nrows() {
                    for v in col0..col0 + dh {
                        a.wv[(c, v)] = 0.0;
                    }
                }
                for r in col0..col0 + dh {
                    a.wo.row_mut(r).fill(0.0);
                }
                for c in 0..layout.kc {
                    a.wv[(c, col0 + c)] = (1.0 / s0) as f32;
                    a.wo[(col0 + c, layout.previous() + c)] = 1.0;
                }
            }
        }
        CraftedHead::FirstToken => {
            if learned {
                // q = α·p_0 (a constant bias), k = p_j: peaks where p_j = p_0.
                let width = layout.learned_width(dh);
                let mut p0 = vec![0.0f32; width];
                learned_vector(cfg.seed, 0, &mut p0, layout.position_norm_sq());
                let alpha = TARGET_GAP * sqrt_dh / (s0 * layout.position_norm_sq() * 0.25);
                for (c, &v) in p0.iter().enumerate() {
                    bq[col0 + c] = (alpha * f64::from(v)) as f32;
                    a.wk[(layout.position() + c, col0 + c)] = 1.0;
                }
            } else if sinusoidal {
                // q = α·(sin 0, cos 0) = α·(0, 1) per pair: q·k = α Σ cos(ω j).
                let pairs = fast_pairs(dh / 2);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let alpha = TARGET_GAP * sqrt_dh / (s0 * cosine_sum_gap(&freqs));
                for (slot, &f) in pairs.iter().enumerate() {
                    bq[col0 + 2 * slot + 1] = alpha as f32;
                    a.wk[(layout.sin_channel(f), col0 + 2 * slot)] = 1.0;
                    a.wk[(layout.sin_channel(f) + 1, col0 + 2 * slot + 1)] = 1.0;
                }
            }
        }
        CraftedHead::DuplicateToken | CraftedHead::Induction => {
            let induction = kind == CraftedHead::Induction;
            let s = if induction {
                last_layer_scale(cfg, layout)
            } else {
                s0
            };
            // Content: the query's content key against the key's content key (duplicate) or the
            // key's previous band (induction); a match scores CONTENT_LOGITS more than an
            // orthogonal token.
            let beta = CONTENT_LOGITS * sqrt_dh / (s * s * layout.kc as f64);
            let key_band = if induction { layout.previous() } else { 0 };
            for c in 0..layout.kc {
                a.wq[(c, col0 + c)] = beta as f32;
                a.wk[(key_band + c, col0 + c)] = 1.0;
            }
            // Position, in the remaining 8 dimensions: the duplicate head penalises itself,
            // the induction head penalises the first token (whose previous band holds its own
            // content, a false match).
            if dh >= layout.kc + 8 {
                let pairs = fast_pairs(4);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let gap = cosine_sum_gap(&freqs);
                for (slot, &f) in pairs.iter().enumerate() {
                    let (qs, qc) = (col0 + layout.kc + 2 * slot, col0 + layout.kc + 2 * slot + 1);
                    let (sin_ch, cos_ch) = (layout.sin_channel(f), layout.sin_channel(f) + 1);
                    if induction {
                        let g = PENALTY_GAP * sqrt_dh / (s * gap);
                        bq[qc] = -g as f32;
                    } else {
                        let sigma = PENALTY_GAP * sqrt_dh / (s * s * gap);
                        a.wq[(sin_ch, qs)] = -sigma as f32;
                        a.wq[(cos_ch, qc)] = -sigma as f32;
                    }
                    a.wk[(sin_ch, qs)] = 1.0;
                    a.wk[(cos_ch, qc)] = 1.0;
                }
            }
        }
    }
    let _ = d;
    a.bq = Some(bq);
    a.bk = Some(bk);
}

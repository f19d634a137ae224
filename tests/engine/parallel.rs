//! The threaded paths against the f64 reference: 49 and 97 tokens (one and two 48-row attention
//! blocks past the first, several matrix-kernel row strips per thread), with one thread, with
//! automatic threads and with more threads than cores, for ALiBi, RoPE, post-LN and
//! grouped-query attention. Below 32 tokens the engine runs on one thread, and below 48 in one
//! attention block, so most other tests in this binary never reach these paths.

use super::*;

/// The thread settings each case runs with: one thread, automatic (every core at ≥ 32 tokens),
/// and four (row blocks split even on a one-core machine).
const THREADS: [Option<usize>; 3] = [Some(1), None, Some(4)];

fn setup(name: &str) -> RandomSetup {
    let base = RandomSetup {
        seed: 0x9e37_79b9,
        heads: 4,
        kv_div: 1,
        d_head: 8,
        layers: 2,
        placement: NormPlacement::Pre,
        position: 0,
        rms: false,
        gated: false,
        causal: false,
        biases: true,
    };
    match name {
        // position: 0 none, 1 RoPE, 2 ALiBi (see `random_transformer`).
        "alibi" => RandomSetup {
            position: 2,
            ..base
        },
        "rope" => RandomSetup {
            position: 1,
            seed: 11,
            ..base
        },
        "post-ln" => RandomSetup {
            placement: NormPlacement::Post,
            seed: 12,
            ..base
        },
        "post-ln-alibi" => RandomSetup {
            placement: NormPlacement::Post,
            position: 2,
            seed: 13,
            ..base
        },
        // Four query heads on two kv heads, RMSNorm, gated SiLU, RoPE, causal: Llama's shape.
        "gqa" => RandomSetup {
            kv_div: 2,
            position: 1,
            rms: true,
            gated: true,
            causal: true,
            seed: 14,
            ..base
        },
        _ => base,
    }
}

fn check_against_reference(name: &str, n: usize) {
    let s = setup(name);
    let t = random_transformer(&s);
    if name == "gqa" {
        assert_eq!(
            (t.heads(), t.kv_heads()),
            (4, 2),
            "the GQA case shares kv heads"
        );
    }
    let mut r = Lcg(s.seed ^ 0x5151);
    let x = r.mat(n, t.d_model(), 1.0);
    let reference = reference_forward(&t, &x, "none", ScoreScale::InvSqrtDHead);
    let mut runs = Vec::new();
    for threads in THREADS {
        let opts = RunOptions {
            threads,
            keep_hidden: true,
            ..RunOptions::default()
        };
        let out = t
            .forward(x.clone(), &vec![false; n], &opts, &mut |_| true)
            .unwrap();
        for (l, layer) in reference.iter().enumerate() {
            for (h, want) in layer.iter().enumerate() {
                let got = out.maps.head(l, h).unwrap();
                for i in 0..n {
                    for j in 0..n {
                        let diff = (f64::from(got[(i, j)]) - want[i][j]).abs();
                        assert!(
                            diff < 1e-4,
                            "{name}, {n} tokens, threads {threads:?}: layer {l} head {h} \
                             cell ({i},{j}) is {} but the reference says {}",
                            got[(i, j)],
                            want[i][j]
                        );
                    }
                }
            }
        }
        runs.push(out);
    }
    // The thread count changes how rows are split, not what each row computes.
    for (threads, out) in THREADS.iter().zip(&runs).skip(1) {
        let diff = max_diff(&out.hidden, &runs[0].hidden);
        assert!(
            diff < 1e-5,
            "{name}, {n} tokens: hidden states with threads {threads:?} differ from one thread by {diff}"
        );
    }
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn alibi_at_49_and_97_tokens_matches_reference_on_every_thread_count() {
    check_against_reference("alibi", 49);
    check_against_reference("alibi", 97);
}

#[test]
fn rope_at_49_and_97_tokens_matches_reference_on_every_thread_count() {
    check_against_reference("rope", 49);
    check_against_reference("rope", 97);
}

#[test]
fn post_ln_at_49_and_97_tokens_matches_reference_on_every_thread_count() {
    check_against_reference("post-ln", 49);
    check_against_reference("post-ln", 97);
    check_against_reference("post-ln-alibi", 97);
}

#[test]
fn grouped_query_at_49_and_97_tokens_matches_reference_on_every_thread_count() {
    check_against_reference("gqa", 49);
    check_against_reference("gqa", 97);
}

/// The demo model (d_model 64, 4 heads, 2 layers) with `positional`, run on `len` tokens
/// ((i·31 + 7) mod 97) with each of two thread settings, keeping the hidden states.
fn demo_runs(
    positional: DemoPositional,
    len: u32,
    threads: [Option<usize>; 2],
) -> [attnviz::engine::AttentionRun; 2] {
    let cfg = DemoConfig {
        d_model: 64,
        heads: 4,
        layers: 2,
        positional,
        ..DemoConfig::default()
    };
    let model = DemoModel::new(cfg).unwrap();
    let ids: Vec<u32> = (0..len).map(|i| (i * 31 + 7) % 97).collect();
    let toks = tokens_from_ids(&ids);
    threads.map(|threads| {
        let opts = RunOptions {
            threads,
            keep_hidden: true,
            ..RunOptions::default()
        };
        model.forward(&toks, &opts).unwrap()
    })
}

/// The demo's additive positions (sinusoidal, learned) are added before the engine; one thread
/// and automatic threads must agree on them at 97 tokens.
#[test]
fn demo_additive_positions_agree_across_threads_at_97_tokens() {
    for positional in [DemoPositional::Sinusoidal, DemoPositional::Learned] {
        let [one, auto] = demo_runs(positional, 97, [Some(1), None]);
        assert_eq!(one.maps.len(), auto.maps.len());
        for l in 0..2 {
            for h in 0..4 {
                let diff = max_diff(
                    &one.maps.head(l, h).unwrap(),
                    &auto.maps.head(l, h).unwrap(),
                );
                assert!(diff < 1e-5, "{positional:?} head {l}.{h}: {diff}");
            }
        }
        let diff = max_diff(one.hidden.as_ref().unwrap(), auto.hidden.as_ref().unwrap());
        assert!(diff < 1e-5, "{positional:?} hidden: {diff}");
    }
}

/// The llama fixture (grouped-query, RoPE, RMSNorm) at 60 tokens: one thread and automatic
/// threads give the same maps and hidden states.
#[test]
fn llama_fixture_agrees_across_threads_at_60_tokens() {
    let ckpt = attnviz::model::Checkpoint::load(&fixture("llama")).unwrap();
    let info = ckpt.info();
    let vocab = info.vocab.unwrap() as u32;
    let ids: Vec<u32> = (0..60u32).map(|i| (i * 7 + 3) % vocab).collect();
    let toks = ckpt.tokens_from_ids(&ids);
    let run = |threads| {
        let opts = RunOptions {
            threads,
            keep_hidden: true,
            ..RunOptions::default()
        };
        ckpt.forward(&toks, &opts).unwrap()
    };
    let (one, auto) = (run(Some(1)), run(None));
    assert!(
        info.kv_heads < info.heads,
        "the llama fixture uses grouped-query attention"
    );
    for l in 0..info.layers {
        for h in 0..info.heads {
            let a = one.maps.head(l, h).unwrap();
            let b = auto.maps.head(l, h).unwrap();
            assert_eq!(a.dim(), (60, 60));
            let diff = max_diff(&a, &b);
            assert!(diff < 1e-5, "head {l}.{h}: {diff}");
        }
    }
    let diff = max_diff(one.hidden.as_ref().unwrap(), auto.hidden.as_ref().unwrap());
    assert!(diff < 1e-5, "hidden: {diff}");
}

/// At 520 tokens on two threads each thread's share of rows (260) is long enough for the
/// products to run as guided pieces of shrinking length, the last ending in a 4-row strip
/// (520 = 86 strips of 6 and 4 rows); one thread runs each product whole. Every row computes
/// the same sums either way, so the maps and hidden states agree bit for bit.
#[test]
fn guided_row_pieces_hold_the_bits_of_one_thread_at_520_tokens() {
    let [one, two] = demo_runs(DemoConfig::default().positional, 520, [Some(1), Some(2)]);
    let bits = |a: &ndarray::Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for l in 0..2 {
        for h in 0..4 {
            let (a, b) = (one.maps.head(l, h).unwrap(), two.maps.head(l, h).unwrap());
            assert_eq!(a.dim(), (520, 520));
            assert!(bits(&a) == bits(&b), "head {l}.{h} differs");
        }
    }
    let (a, b) = (one.hidden.unwrap(), two.hidden.unwrap());
    assert!(bits(&a) == bits(&b), "hidden states differ");
}

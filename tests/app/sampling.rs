//! The walkthrough's sampling step through the whole app: Next from the head output opens it,
//! the tokens listed are the model's own next tokens (as `attnviz next` ranks them), top-k 1
//! collapses the distribution onto the most likely token, and "Sample" with a fixed seed draws
//! the token `analysis::sampling` draws. The demo and a model without an LM head say why they
//! have nothing to sample.

use super::{app_harness, fixture_dir, wait_ready};
use attnviz::analysis::sampling::{self, RankedLogits, SamplingSettings};
use attnviz::app::teach::TeachTab;
use attnviz::app::teach::walkthrough::SAMPLING_STEP;
use attnviz::app::{AppState, ViewKind};
use attnviz::engine::RunOptions;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::{self, Positions, RunInput};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::sync::Arc;

const TEXT: &str = "the quick brown fox jumps over the lazy dog";

/// The walkthrough at its last head step (the output) on the checkpoint in `dir`.
fn at_the_head_output(dir: Option<&Path>) -> AppState {
    let mut state = AppState {
        view: ViewKind::Teach,
        model_dir: dir.map(Path::to_owned),
        text: TEXT.to_owned(),
        ..AppState::default()
    };
    state.teach.tab = TeachTab::Walkthrough;
    state.teach.step = SAMPLING_STEP - 1;
    state
}

/// The label the app gives vocabulary id `id` of `model`.
fn label_of(model: &LoadedModel, id: u32) -> String {
    let token = model.as_checkpoint().unwrap().tokens_from_ids(&[id]);
    token[0].label(&model.vocab_style())
}

#[test]
fn sampling_lists_the_models_next_tokens_and_top_k_1_keeps_only_the_argmax() {
    let dir = fixture_dir("gpt2");
    let mut harness = app_harness(at_the_head_output(Some(&dir)));
    wait_ready(&mut harness);
    assert!(harness.query_by_label("8. The head output").is_some());
    harness.get_by_label("Next").click();
    harness.step();
    assert_eq!(harness.state().state.teach.step, SAMPLING_STEP);
    wait_ready(&mut harness);
    assert!(
        harness
            .query_by_label("9. Sampling the next token")
            .is_some()
    );

    // What the pipeline says, with the LM head `attnviz next` uses.
    let model = LoadedModel::checkpoint(&dir, Arc::default()).unwrap();
    let input = RunInput::new(TokenInput::Text(TEXT.to_owned()));
    let opts = RunOptions::default();
    let (_, next) =
        pipeline::next_distribution(&model, &input, &opts, None, &mut |_| true).unwrap();
    let (_, _, top) =
        pipeline::next_tokens(&model, &input, &opts, Positions::Last, 3, &mut |_| true).unwrap();
    let ranked = RankedLogits::new(&next.logprobs);
    let argmax = ranked.id(0).unwrap();
    assert_eq!(argmax, top[0].top[0].id, "the same ranking as attnviz next");
    let vocab = next.logprobs.len();
    for rank in 0..3 {
        let label = label_of(&model, ranked.id(rank).unwrap());
        assert!(
            harness.query_by_label(&format!("\"{label}\"")).is_some(),
            "rank {rank}: {label}"
        );
    }
    assert!(
        harness
            .query_by_label(&format!("{vocab} of {vocab} tokens can be drawn"))
            .is_some()
    );

    // Sample with seed 7 at T = 1: the token the pure draw gives.
    harness.state_mut().state.teach.sampling.seed = 7;
    harness.run();
    harness.get_by_label("Sample").click();
    harness.run();
    let plain = ranked.distribution(&SamplingSettings::default());
    let drawn = ranked.id(sampling::draw(&plain, 7).unwrap()).unwrap();
    let drawn_label = label_of(&model, drawn);
    assert!(
        harness
            .query_by_label_contains(&format!("seed 7 drew \"{drawn_label}\""))
            .is_some(),
        "seed 7 draws {drawn_label}"
    );
    assert_eq!(harness.state().state.teach.sampling.seed, 8, "next seed");

    // Top-k 1: everything on the most likely token, whatever the seed.
    harness
        .get_by_role_and_label(Role::Slider, "top-k")
        .set_value_accesskit(1.0);
    harness.run();
    assert_eq!(harness.state().state.teach.sampling.top_k, 1);
    assert!(
        harness
            .query_by_label(&format!("1 of {vocab} tokens can be drawn"))
            .is_some()
    );
    assert_eq!(
        harness.query_all_by_label("100.00%").count(),
        1,
        "one bar holds all the probability"
    );
    harness.get_by_label("Sample").click();
    harness.run();
    let argmax_label = label_of(&model, argmax);
    assert!(
        harness
            .query_by_label_contains(&format!(
                "seed 8 drew \"{argmax_label}\": rank 1, p 100.00%"
            ))
            .is_some(),
        "top-k 1 draws the argmax {argmax_label}"
    );
    // Back returns to the head output.
    harness.get_by_label("Back").click();
    harness.run();
    assert_eq!(harness.state().state.teach.step, SAMPLING_STEP - 1);
}

#[test]
fn the_demo_and_a_model_without_an_lm_head_say_why_there_is_nothing_to_sample() {
    let mut state = at_the_head_output(None);
    state.teach.step = SAMPLING_STEP;
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    assert_eq!(harness.state().state.job_key().unwrap().sampling, None);
    assert!(
        harness
            .query_by_label_contains("The demo model has no vocabulary and no LM head")
            .is_some()
    );
    let mut state = at_the_head_output(Some(&fixture_dir("bert")));
    state.teach.step = SAMPLING_STEP;
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    assert!(
        harness
            .query_by_label_contains("no next-token LM head")
            .is_some()
    );
}

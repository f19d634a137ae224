//! One pixel path: what the app uploads as textures is what the exports write.
//!
//! - The grid thumbnails the app uploads equal, pixel for pixel, the thumbnails of the grid PNG
//!   that `attnviz render --view grid` writes for the same 300-token input (both max-pooled).
//! - At 2,000 tokens the demo's previous-token head is drawn as a visible diagonal on screen
//!   (through wgpu), not as a blank square: the heatmap draws a max-pooled level when the map
//!   has more cells than the screen has pixels.

use super::{RUN_TIMEOUT, app_harness, scratch, wait_ready};
use attnviz::app::{AppState, AttnApp, Theme, ViewKind};
use attnviz::model::demo::{CraftedHead, crafted_at};
use attnviz::render::{Colormap, GridOptions, grid_thumb_rect};
use egui_kittest::Harness;
use image::RgbaImage;
use std::process::Command;

/// `n` distinct words, one demo token each.
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_exported_grid_equals_the_uploaded_thumbnails() {
    let text = words(300);
    let mut harness = app_harness(AppState {
        text: text.clone(),
        view: ViewKind::Grid,
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 300);
    harness.run();
    let [layers, heads, _, _] = run.maps.shape();

    let dir = scratch("pixel-path-grid");
    let out = dir.join("grid.png");
    let o = Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args([
            "render", "--text", &text, "--view", "grid", "--cell", "96", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exported = image::open(&out).unwrap().to_rgba8();

    // Thumbnail positions depend on the thumbnail side and on whether there is a title and a
    // text line (the input's start), not on their texts.
    let opts = GridOptions {
        title: "any".to_owned(),
        text: "any".to_owned(),
        thumb_px: 96,
        labels: true,
        ..GridOptions::default()
    };
    let app = harness.state();
    for layer in 0..layers {
        for head in 0..heads {
            let uploaded = app
                .grid_thumbnail(layer, head)
                .unwrap_or_else(|| panic!("no thumbnail for L{layer}H{head}"));
            assert_eq!(uploaded.dimensions(), (96, 96));
            let (x, y, w, h) = grid_thumb_rect(layers, heads, layer, head, &opts);
            let crop: RgbaImage = image::imageops::crop_imm(&exported, x, y, w, h).to_image();
            assert!(
                crop == *uploaded,
                "L{layer}H{head}: the exported thumbnail differs from the uploaded texture"
            );
        }
    }
}

#[test]
fn a_long_previous_token_head_is_a_visible_diagonal_on_screen() {
    let demo = AppState::default().demo;
    let (layer, head) = (0..demo.layers)
        .flat_map(|l| (0..demo.heads).map(move |h| (l, h)))
        .find(|&(l, h)| crafted_at(&demo, l, h) == Some(CraftedHead::PreviousToken))
        .expect("the demo has a previous-token head");
    let mut app = AttnApp::new(
        AppState {
            text: words(2000),
            view: ViewKind::Heatmap,
            layer_idx: layer,
            head_idx: head,
            colormap: Colormap::Grays,
            theme: Theme::Dark,
            ..AppState::default()
        },
        || {},
    );
    assert!(app.wait_for_run(RUN_TIMEOUT * 3), "{:?}", app.error);
    assert_eq!(app.shown_run().unwrap().tokens.len(), 2000);

    let mut harness = Harness::builder()
        .with_size(egui::vec2(800.0, 800.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut AttnApp| app.draw_central(ui), app);
    harness.run();
    let shown = harness.state().heatmap_on_screen().unwrap();
    assert!(
        shown.width() < 800,
        "a {}-pixel-wide image cannot be drawn 1:1 in an 800-point window",
        shown.width()
    );
    let screen = harness.render().unwrap();
    // Grays on a dark theme: the diagonal is near white, text and background are not. The plot
    // is several hundred pixels across and the diagonal crosses every row of it; with plain
    // nearest-neighbour sampling of the 2000-cell texture only a few pixels would be lit.
    let bright_rows = (0..screen.height())
        .filter(|&y| {
            (0..screen.width()).any(|x| screen.get_pixel(x, y).0[..3].iter().all(|&c| c >= 200))
        })
        .count();
    assert!(
        bright_rows >= 400,
        "only {bright_rows} rows show the diagonal"
    );
}

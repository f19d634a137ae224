//! Scripts and emoji beyond DejaVu Sans: the app draws them with its bundled fallback fonts, so
//! egui_kittest's default `MissingGlyphPolicy::Panic` (a panic for any glyph no font has) stays
//! quiet while Devanagari, a ZWJ emoji and a flag go through the text box, the token strip, the
//! heatmap labels and the grid.

use super::{AppState, ViewKind, app_harness, retype, wait_ready};

#[test]
fn devanagari_zwj_emoji_and_flags_draw_without_missing_glyphs() {
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    let text = "नमस्ते 👩\u{200D}💻 🇫🇷 cafe\u{301}";
    retype(&mut harness, "Text", text);
    let run = wait_ready(&mut harness);
    let tokens: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(tokens, ["नमस्ते", "👩\u{200D}💻", "🇫🇷", "cafe\u{301}"]);
    // Every view lays out the token labels; each frame would panic on a missing glyph.
    for view in [ViewKind::Heatmap, ViewKind::Grid, ViewKind::HeadView] {
        harness.state_mut().state.view = view;
        harness.run();
    }
}

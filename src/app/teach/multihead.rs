//! The multi-head view: how the model's d_model splits into heads, what each head computes (its
//! real map for this input, as render's thumbnail), the concatenation and the output
//! projection, with the live sizes of the model on screen (the demo's change with its
//! settings), and for grouped-query attention which query heads share one key/value head.

use super::TeachCx;
use super::texture::KeyedTexture;
use crate::app::theme;
use crate::render::{self, ValueRange, ValueScale};
use egui::{Align2, FontId, Rect, Sense, Stroke, pos2, vec2};

/// What one head's thumbnail shows.
#[derive(Clone, Debug, PartialEq)]
struct ThumbKey {
    run: usize,
    layer_idx: usize,
    head_idx: usize,
    colormap: render::Colormap,
    mask: crate::engine::AppliedMask,
}

/// The multi-head view's runtime state.
#[derive(Default)]
pub struct MultiHeadView {
    thumbs: Vec<Option<KeyedTexture<ThumbKey>>>,
}

impl MultiHeadView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        let Some(dims) = tc.model_dims() else {
            ui.label("waiting for the model's sizes…");
            return;
        };
        let n = tc.run.tokens.len();
        let layer_idx = tc.cx.state.layer_idx;
        let (heads, kv_heads, d_model, d_head) =
            (dims.heads, dims.kv_heads, dims.d_model, dims.d_head);
        let group = if kv_heads > 0 && heads.is_multiple_of(kv_heads) {
            heads / kv_heads
        } else {
            1
        };
        ui.heading(format!(
            "{}: d_model {d_model} = {heads} heads × d_head {d_head}",
            dims.name
        ));
        let gqa = if kv_heads < heads {
            format!(
                " Here the {heads} query heads share {kv_heads} key/value heads (grouped-query \
                 attention): each group of {group} query heads reads the same K and V, which \
                 saves memory for the keys and values; their queries still differ."
            )
        } else {
            String::new()
        };
        tc.explain(
            ui,
            &format!(
                "Multi-head attention does not run one big attention over all {d_model} \
                 dimensions. The token vectors (n × {d_model}, n = {n} here) are projected into \
                 {heads} smaller spaces of {d_head} dimensions each, one per head, with separate \
                 W_Q, W_K, W_V slices ({d_model} × {d_head}). Each head computes its own n × n \
                 map, so different heads can look for different things (the previous token, \
                 the same word, the first token…). Their outputs (n × {d_head} each) are put side \
                 by side again (concatenated, n × {d_model}) and mixed by the output projection \
                 W_O ({d_model} × {d_model}).{gqa}"
            ),
        );
        let [layers, map_heads, _, _] = tc.run.maps.shape();
        if layer_idx >= layers || map_heads != heads {
            ui.label("waiting for the run of this model…");
            return;
        }
        self.thumbs.resize_with(heads, || None);

        let width = ui.available_width().max(300.0);
        let seg = width / heads as f32;
        let thumb = (seg - 6.0).clamp(8.0, 96.0);
        let height = 40.0 + 24.0 + thumb + 30.0 + 24.0 + 40.0 + 24.0 + 24.0;
        let (outer, _) = ui.allocate_exact_size(vec2(width, height), Sense::hover());
        let painter = ui.painter_at(outer);
        let text = ui.visuals().text_color();
        let font = FontId::proportional(12.0);
        let line = Stroke::new(1.0, ui.visuals().weak_text_color());
        let mut y = outer.top();

        // The input, split into per-head slices.
        painter.text(
            pos2(outer.left(), y),
            Align2::LEFT_TOP,
            format!("x · W_Q → Q: n × {d_model}, split into {heads} slices of {d_head}"),
            font.clone(),
            text,
        );
        y += 16.0;
        for h in 0..heads {
            let r = Rect::from_min_size(
                pos2(outer.left() + h as f32 * seg, y),
                vec2(seg - 2.0, 20.0),
            );
            painter.rect_filled(r, 2.0, theme::head_color(h, heads));
            if seg > 22.0 {
                painter.text(
                    r.center(),
                    Align2::CENTER_CENTER,
                    format!("{h}"),
                    font.clone(),
                    egui::Color32::BLACK,
                );
            }
        }
        y += 28.0;
        // Each head's map.
        let colormap = tc.cx.state.colormap;
        let mask = tc.mask().clone();
        let is_pad: Vec<bool> = tc.run.tokens.iter().map(|t| t.is_pad()).collect();
        let all: Vec<usize> = (0..n).collect();
        let masked = render::view::masked_cells(&mask, n, &is_pad, &all);
        for h in 0..heads {
            let key = ThumbKey {
                run: tc.run_id(),
                layer_idx,
                head_idx: h,
                colormap,
                mask: mask.clone(),
            };
            let map = tc.run.maps.head(layer_idx, h);
            let Some(slot) = self.thumbs.get_mut(h) else {
                continue;
            };
            let tex = KeyedTexture::get(slot, ui.ctx(), &format!("teach-mh-{h}"), key, || {
                let map = map?;
                Some(render::thumbnail_image(
                    map.view(),
                    masked.as_ref().map(|m| m.view()),
                    thumb.round().max(1.0) as u32,
                    colormap,
                    ValueRange::of(map.view()),
                    ValueScale::Linear,
                ))
            });
            if let Some(tex) = tex {
                let r = Rect::from_min_size(
                    pos2(outer.left() + h as f32 * seg + (seg - thumb) / 2.0, y),
                    vec2(thumb, thumb),
                );
                painter.image(
                    tex.id(),
                    r,
                    Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                    egui::Color32::WHITE,
                );
                if h == tc.cx.state.head_idx {
                    painter.rect_stroke(
                        r,
                        0.0,
                        (2.0, theme::selection_outline(ui.visuals().dark_mode)),
                        egui::StrokeKind::Outside,
                    );
                }
            }
        }
        y += thumb + 4.0;
        painter.text(
            pos2(outer.left(), y),
            Align2::LEFT_TOP,
            format!(
                "each head: softmax(q·k × 1/√{d_head}) · V → n × {d_head}{}",
                if group > 1 {
                    format!("  (K, V: {kv_heads} heads, each read by {group} query heads)")
                } else {
                    String::new()
                }
            ),
            font.clone(),
            text,
        );
        y += 26.0;
        // Concatenation: the slices side by side again.
        painter.text(
            pos2(outer.left(), y),
            Align2::LEFT_TOP,
            format!("concatenate: {heads} × (n × {d_head}) → n × {d_model}"),
            font.clone(),
            text,
        );
        y += 16.0;
        for h in 0..heads {
            let r = Rect::from_min_size(pos2(outer.left() + h as f32 * seg, y), vec2(seg, 16.0));
            painter.rect_filled(r, 0.0, theme::head_color(h, heads));
        }
        painter.rect_stroke(
            Rect::from_min_size(pos2(outer.left(), y), vec2(seg * heads as f32, 16.0)),
            0.0,
            line,
            egui::StrokeKind::Outside,
        );
        y += 24.0;
        let wo = Rect::from_min_size(pos2(outer.left(), y), vec2(seg * heads as f32, 30.0));
        painter.rect_stroke(wo, 4.0, Stroke::new(1.5, text), egui::StrokeKind::Inside);
        painter.text(
            wo.center(),
            Align2::CENTER_CENTER,
            format!("× W_O ({d_model} × {d_model}): mixes the heads' outputs → n × {d_model}, added to the residual stream"),
            font.clone(),
            text,
        );
        y += 40.0;
        let attn_params = d_model * (heads * d_head)
            + 2 * d_model * (kv_heads * d_head)
            + heads * d_head * d_model;
        painter.text(
            pos2(outer.left(), y),
            Align2::LEFT_TOP,
            format!(
                "weights of one attention layer: W_Q {d_model}×{} + W_K, W_V {d_model}×{} each + W_O {}×{d_model} = {attn_params} numbers",
                heads * d_head,
                kv_heads * d_head,
                heads * d_head
            ),
            font,
            text,
        );
    }
}

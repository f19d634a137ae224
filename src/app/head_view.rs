//! The head view: BertViz-style lines between two token columns.
//!
//! The left column lists the queries, the right column the keys. Every visible head of the
//! selected layer draws a line from query `i` to key `j` in its own colour, with opacity equal to
//! the weight. The links are extracted once per (run, layer) down to a base threshold of at most
//! [`LINK_FLOOR`], strongest first, each head keeping at most [`MAX_LINKS_PER_HEAD`]. Any higher
//! threshold is then a prefix of those lists (found by binary search), so dragging the threshold
//! slider upwards costs nothing. A frame only filters the live links against the scrolled viewport
//! (or the hovered token) and paints them through one reused shape buffer.

use super::state::AppState;
use super::theme;
use super::view::{View, ViewCx};
use crate::analysis::head_view::{Link, extract_links};
use crate::engine::AppliedMask;
use crate::pipeline::Run;
use egui::{Align2, Rect, Sense, Shape, Stroke, StrokeKind, TextStyle, WidgetInfo, pos2, vec2};
use std::sync::{Arc, Weak};

/// Height of one token row, in points.
const ROW_HEIGHT: f32 = 18.0;
/// Links are extracted down to this weight (or the threshold, if lower).
const LINK_FLOOR: f32 = 0.02;
/// Each head keeps at most this many links (its strongest).
const MAX_LINKS_PER_HEAD: usize = 16_384;
/// At most this many lines are painted per frame, shared among the visible heads.
const MAX_LINES_PER_FRAME: usize = 24_000;
/// Rows above and below the viewport whose lines still count as visible.
const ROW_MARGIN: usize = 8;
/// Width of a link line, in points.
const LINE_WIDTH: f32 = 1.5;
/// Labels longer than this many characters are shortened.
const MAX_LABEL_CHARS: usize = 18;

/// The links of one layer down to a base threshold.
struct LinkCache {
    /// The run the links came from (a weak handle keeps its address from being reused).
    run: Weak<Run>,
    layer_idx: usize,
    /// The weight the links were extracted down to.
    base: f32,
    /// Per head: links at or above `base`, strongest first.
    heads: Vec<Vec<Link>>,
    /// Per head: true when it had more links than [`MAX_LINKS_PER_HEAD`].
    capped: Vec<bool>,
}

impl LinkCache {
    fn matches(&self, run: &Arc<Run>, layer_idx: usize, threshold: f32) -> bool {
        std::ptr::eq(self.run.as_ptr(), Arc::as_ptr(run))
            && self.layer_idx == layer_idx
            && threshold >= self.base
    }

    /// Head `h`'s links at `threshold` (at least `base`), strongest first.
    fn live(&self, h: usize, threshold: f32) -> &[Link] {
        let links = self.heads.get(h).map_or(&[][..], Vec::as_slice);
        &links[..links.partition_point(|l| l.weight >= threshold)]
    }

    /// True when some head's live links were cut by [`MAX_LINKS_PER_HEAD`].
    fn capped_at(&self, threshold: f32) -> bool {
        (0..self.heads.len()).any(|h| {
            self.capped.get(h).copied().unwrap_or(false)
                && self.live(h, threshold).len() == self.heads.get(h).map_or(0, Vec::len)
        })
    }
}

/// Which column a token row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Query,
    Key,
}

/// The head view's runtime state.
#[derive(Default)]
pub struct HeadView {
    cache: Option<LinkCache>,
    /// Reused every frame so that painting allocates nothing per line.
    shapes: Vec<Shape>,
    /// The shown run without its special tokens, with the run it was made from and the
    /// original index of each kept token.
    without_special: Option<WithoutSpecial>,
}

impl View for HeadView {
    /// The head view of the run on screen; with "hide special tokens", of the run without them.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        let Some(run) = cx.run.clone() else {
            return;
        };
        let labels = cx.labels.clone();
        if cx.state.hide_special
            && let Some((run, labels, kept)) = self.without_special(&run, &labels)
        {
            filtered_ui(self, ui, cx, &run, &labels, &kept);
            return;
        }
        self.draw(ui, &run, &labels, cx.state);
    }
}

impl HeadView {
    /// Draws the head view.
    /// `labels` are the tokens' display labels, one per token.
    pub fn draw(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        state: &mut AppState,
    ) {
        let [_, heads, n, _] = run.maps.shape();
        let layer_idx = state.layer_idx;
        if heads == 0 || n == 0 {
            ui.label("Nothing to show: the run has no heads or no tokens.");
            return;
        }
        if run.maps.head(layer_idx, 0).is_none() {
            ui.label("This layer does not exist in the current run.");
            return;
        }
        controls_ui(ui, heads, layer_idx, state);
        let threshold = state.head_view_threshold.clamp(0.0, 1.0);
        self.refresh(run, layer_idx, threshold, heads);
        let Self { cache, shapes, .. } = self;
        let Some(cache) = cache.as_ref() else {
            return;
        };
        let hint = if cache.capped_at(threshold) {
            format!(
                "left: queries · right: keys · hover a token to filter, click a query to select it · \
                 many links: each head keeps its {MAX_LINKS_PER_HEAD} strongest"
            )
        } else {
            "left: queries · right: keys · hover a token to filter, click a query to select it"
                .to_owned()
        };
        ui.label(egui::RichText::new(hint).small().weak());
        egui::ScrollArea::vertical()
            .id_salt("head-view-scroll")
            .auto_shrink([false, false])
            .show_viewport(ui, |ui, viewport| {
                let rows = Rows { run, labels };
                columns_ui(ui, viewport, &rows, state, cache, threshold, shapes);
            });
    }

    /// Re-extracts the links when the run or layer changed, or the threshold fell below the base.
    fn refresh(&mut self, run: &Arc<Run>, layer_idx: usize, threshold: f32, heads: usize) {
        if self
            .cache
            .as_ref()
            .is_some_and(|c| c.matches(run, layer_idx, threshold))
        {
            return;
        }
        // Reuse the old buffers where there are any.
        let mut buffers = self.cache.take().map(|c| c.heads).unwrap_or_default();
        buffers.resize_with(heads, Vec::new);
        let base = threshold.min(LINK_FLOOR);
        let capped = buffers
            .iter_mut()
            .enumerate()
            .map(|(h, links)| match run.maps.head(layer_idx, h) {
                Some(map) => extract_links(map.view(), base, MAX_LINKS_PER_HEAD, links),
                None => {
                    links.clear();
                    false
                }
            })
            .collect();
        self.cache = Some(LinkCache {
            run: Arc::downgrade(run),
            layer_idx,
            base,
            heads: buffers,
            capped,
        });
    }
}

/// Head toggles, all/none and the threshold slider.
fn controls_ui(ui: &mut egui::Ui, heads: usize, layer_idx: usize, state: &mut AppState) {
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("layer {layer_idx} · heads:"));
        for h in 0..heads {
            let (chip, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
            ui.painter()
                .rect_filled(chip, 2.0, theme::head_color(h, heads));
            let mut on = !state.head_view_hidden.contains(&h);
            if ui.checkbox(&mut on, format!("head {h}")).changed() {
                state.head_view_hidden.retain(|&x| x != h);
                if !on {
                    state.head_view_hidden.push(h);
                    state.head_view_hidden.sort_unstable();
                }
            }
        }
        if ui.button("all").clicked() {
            state.head_view_hidden.clear();
        }
        if ui.button("none").clicked() {
            state.head_view_hidden = (0..heads).collect();
        }
    });
    ui.add(egui::Slider::new(&mut state.head_view_threshold, 0.0..=1.0).text("threshold"));
}

/// The two token columns and the lines between them, inside the scroll area.
/// The run and its tokens' display labels.
struct Rows<'a> {
    run: &'a Run,
    labels: &'a [String],
}

fn columns_ui(
    ui: &mut egui::Ui,
    viewport: Rect,
    rows: &Rows<'_>,
    state: &mut AppState,
    cache: &LinkCache,
    threshold: f32,
    shapes: &mut Vec<Shape>,
) {
    let Rows { run, labels } = *rows;
    let n = run.tokens.len().min(run.maps.len());
    let heads = cache.heads.len();
    let width = ui.available_width().max(120.0);
    let (rect, _) = ui.allocate_exact_size(vec2(width, n as f32 * ROW_HEIGHT), Sense::hover());
    let col_w = (width * 0.28).clamp(40.0, 160.0);
    let gap = 6.0;
    let x0 = rect.left() + col_w + gap;
    let x1 = rect.right() - col_w - gap;
    let row_top = |i: usize| rect.top() + i as f32 * ROW_HEIGHT;
    let row_mid = |i: usize| row_top(i) + 0.5 * ROW_HEIGHT;

    // Rows on screen (viewport is relative to the content, which starts with `rect`).
    let first = ((viewport.min.y / ROW_HEIGHT).floor().max(0.0) as usize).min(n);
    let last = ((viewport.max.y / ROW_HEIGHT).ceil().max(0.0) as usize).clamp(first, n);
    let lo = first.saturating_sub(ROW_MARGIN);
    let hi = (last + ROW_MARGIN).min(n);

    // Interaction for the rows on screen.
    let base_id = ui.scope_id().with("head-view-rows");
    let mut hovered: Option<(Side, usize)> = None;
    let mut clicked: Option<usize> = None;
    for i in first..last {
        let text = labels.get(i).map_or("", String::as_str);
        let top = row_top(i);
        let left = Rect::from_min_max(pos2(rect.left(), top), pos2(x0, top + ROW_HEIGHT));
        let right = Rect::from_min_max(pos2(x1, top), pos2(rect.right(), top + ROW_HEIGHT));
        let q = ui.interact(left, base_id.with(("query", i)), Sense::click());
        q.widget_info(|| {
            WidgetInfo::labeled(egui::Role::Button, true, format!("query {i}: {text}"))
        });
        let k = ui.interact(right, base_id.with(("key", i)), Sense::hover());
        k.widget_info(|| WidgetInfo::labeled(egui::Role::Button, true, format!("key {i}: {text}")));
        if q.hovered() {
            hovered = Some((Side::Query, i));
        } else if k.hovered() {
            hovered = Some((Side::Key, i));
        }
        if q.clicked() {
            clicked = Some(i);
        }
    }
    if let Some(i) = clicked {
        state.selected_queries = vec![i];
    }

    // Lines first, so that the labels stay on top.
    let visible_heads = (0..heads)
        .filter(|h| !state.head_view_hidden.contains(h))
        .count();
    let budget = MAX_LINES_PER_FRAME / visible_heads.max(1);
    shapes.clear();
    for h in 0..heads {
        if state.head_view_hidden.contains(&h) {
            continue;
        }
        let links = cache.live(h, threshold);
        let color = theme::head_color(h, heads);
        let mut drawn = 0;
        for link in links {
            if drawn >= budget {
                break;
            }
            let (q, k) = (link.query as usize, link.key as usize);
            let keep = match hovered {
                Some((Side::Query, i)) => q == i,
                Some((Side::Key, j)) => k == j,
                None => q.min(k) < hi && q.max(k) >= lo,
            };
            if !keep {
                continue;
            }
            let alpha = link.weight.clamp(0.0, 1.0);
            shapes.push(Shape::line_segment(
                [pos2(x0, row_mid(q)), pos2(x1, row_mid(k))],
                Stroke::new(LINE_WIDTH, color.gamma_multiply(alpha)),
            ));
            drawn += 1;
        }
    }
    let painter = ui.painter();
    painter.extend(shapes.drain(..));

    // Labels of the rows on screen.
    let dark = ui.visuals().dark_mode;
    let font = TextStyle::Body.resolve(ui.style());
    let text_color = ui.visuals().text_color();
    let weak_color = ui.visuals().weak_text_color();
    let outline = Stroke::new(1.0, theme::selection_outline(dark));
    for i in first..last {
        let Some(token) = run.tokens.get(i) else {
            continue;
        };
        let top = row_top(i);
        let left = Rect::from_min_max(pos2(rect.left(), top), pos2(x0 - gap, top + ROW_HEIGHT));
        let right = Rect::from_min_max(pos2(x1 + gap, top), pos2(rect.right(), top + ROW_HEIGHT));
        if state.selected_queries.contains(&i) {
            painter.rect_filled(left, 2.0, theme::selected_token_fill(dark));
        }
        match hovered {
            Some((Side::Query, h)) if h == i => {
                painter.rect_stroke(left, 2.0, outline, StrokeKind::Inside);
            }
            Some((Side::Key, h)) if h == i => {
                painter.rect_stroke(right, 2.0, outline, StrokeKind::Inside);
            }
            _ => {}
        }
        let color = if token.is_special {
            weak_color
        } else {
            text_color
        };
        let label = short_label(labels.get(i).unwrap_or(&token.text));
        painter.text(
            pos2(left.right() - 2.0, row_mid(i)),
            Align2::RIGHT_CENTER,
            &label,
            font.clone(),
            color,
        );
        painter.text(
            pos2(right.left() + 2.0, row_mid(i)),
            Align2::LEFT_CENTER,
            &label,
            font.clone(),
            color,
        );
    }
}

/// `text`, shortened to [`MAX_LABEL_CHARS`] characters with an ellipsis.
fn short_label(text: &str) -> String {
    if text.chars().count() <= MAX_LABEL_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_LABEL_CHARS - 1).collect();
    out.push('…');
    out
}

/// The filtered run, its labels, and the original index of each kept token.
type Filtered = (Arc<Run>, Arc<Vec<String>>, Vec<usize>);

/// A run with its special tokens hidden (see [`run_without_special`]).
struct WithoutSpecial {
    /// The run it was made from.
    from: Weak<Run>,
    /// The filtered run, or `None` when nothing is special.
    filtered: Option<Filtered>,
}

impl HeadView {
    /// The shown run without special tokens, made once per run.
    fn without_special(&mut self, run: &Arc<Run>, labels: &[String]) -> Option<Filtered> {
        let fresh = self
            .without_special
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.from.as_ptr(), Arc::as_ptr(run)));
        if !fresh {
            let filtered = run_without_special(run).map(|(r, kept)| {
                let labels = kept
                    .iter()
                    .map(|&i| labels.get(i).cloned().unwrap_or_default())
                    .collect();
                (Arc::new(r), Arc::new(labels), kept)
            });
            self.without_special = Some(WithoutSpecial {
                from: Arc::downgrade(run),
                filtered,
            });
        }
        self.without_special
            .as_ref()
            .and_then(|w| w.filtered.clone())
    }
}

/// The head view on a run without special tokens: selected queries are translated to the
/// filtered run's indices and back, so the selection stays the same tokens in every view.
fn filtered_ui(
    view: &mut HeadView,
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    run: &Arc<Run>,
    labels: &[String],
    kept: &[usize],
) {
    let mut local = cx.state.clone();
    local.selected_queries = cx
        .state
        .selected_queries
        .iter()
        .filter_map(|q| kept.iter().position(|k| k == q))
        .collect();
    let before = local.selected_queries.clone();
    view.draw(ui, run, labels, &mut local);
    let selection_changed = local.selected_queries != before;
    let selected: Vec<usize> = local
        .selected_queries
        .iter()
        .filter_map(|&i| kept.get(i).copied())
        .collect();
    local.selected_queries = if selection_changed {
        selected
    } else {
        // Hidden special tokens stay selected.
        cx.state.selected_queries.clone()
    };
    *cx.state = local;
}

/// `run` with its special tokens ([CLS], [SEP], [PAD], …) dropped from both axes of every head
/// and each row renormalised, and the original index of each kept token. `None` when no token
/// is special (the run is shown as it is) or every token is (nothing would be left).
fn run_without_special(run: &Run) -> Option<(Run, Vec<usize>)> {
    let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
    let (maps, kept) = crate::analysis::special::without_special(&run.maps, &special)?;
    let tokens = kept.iter().map(|&i| run.tokens[i].clone()).collect();
    // The mask's token indices name the full run; the head view draws no masked cells.
    let mut filtered = Run::from_maps(tokens, maps, AppliedMask::default(), run.model.clone());
    filtered.fully_masked_queries = run
        .fully_masked_queries
        .iter()
        .filter_map(|q| kept.iter().position(|k| k == q))
        .collect();
    filtered.vocab_style = run.vocab_style.clone();
    filtered.kv_groups = run.kv_groups.clone();
    filtered.text = run.text.clone();
    Some((filtered, kept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::engine::AttentionMaps;
    use crate::tokenize::Token;
    use ndarray::array;

    #[test]
    fn the_run_keeps_its_tokens_and_queries_without_the_special_ones() {
        let mut tokens: Vec<Token> = ["[CLS]", "a", "b"]
            .iter()
            .map(|t| Token::from_text(t))
            .collect();
        tokens[0].is_special = true;
        let head = array![[1.0, 0.0, 0.0], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]];
        let maps = AttentionMaps::from_heads(1, 1, 3, vec![head]).unwrap();
        let mut run = Run::of_maps(tokens, maps);
        run.fully_masked_queries = vec![0, 2];
        let (out, kept) = run_without_special(&run).unwrap();
        assert_eq!(kept, [1, 2]);
        let texts: Vec<&str> = out.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        // Query 2 ("b") is the filtered run's query 1; [CLS] is gone.
        assert_eq!(out.fully_masked_queries, [1]);
        // Nothing special: the run is shown as it is.
        let mut plain = run;
        plain.tokens[0].is_special = false;
        assert!(run_without_special(&plain).is_none());
    }

    mod ui {
        use super::super::*;
        use crate::engine::AttentionMaps;
        use crate::tokenize::Token;
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable;
        use ndarray::Array2;

        /// One layer; in every head, each query spreads 0.1 over ten keys (i + h + 0..10) mod n.
        fn spread_run(heads: usize, n: usize) -> Arc<Run> {
            let maps = (0..heads)
                .map(|h| {
                    Array2::from_shape_fn((n, n), |(i, j)| {
                        if (j + n - (i + h) % n) % n < 10 {
                            0.1
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let Some(maps) = AttentionMaps::from_heads(1, heads, n, maps) else {
                panic!("bad test maps");
            };
            Arc::new(Run::of_maps(
                (0..n).map(|i| Token::from_text(&format!("t{i}"))).collect(),
                maps,
            ))
        }

        type Tested = (HeadView, AppState);

        fn harness(run: Arc<Run>) -> Harness<'static, Tested> {
            Harness::builder()
                .with_size(egui::vec2(900.0, 700.0))
                .build_ui_state(
                    move |ui, (view, state): &mut Tested| {
                        let labels: Vec<String> =
                            run.tokens.iter().map(|t| t.text.clone()).collect();
                        view.draw(ui, &run, &labels, state);
                    },
                    (HeadView::default(), AppState::default()),
                )
        }

        #[test]
        fn toggles_threshold_and_query_clicks() {
            let mut harness = harness(spread_run(3, 12));
            harness.run();
            harness.get_by_label("head 1").click();
            harness.run();
            assert_eq!(harness.state().1.head_view_hidden, [1]);
            harness.get_by_label("none").click();
            harness.run();
            assert_eq!(harness.state().1.head_view_hidden, [0, 1, 2]);
            harness.get_by_label("all").click();
            harness.run();
            assert!(harness.state().1.head_view_hidden.is_empty());
            harness.get_by_label("query 2: t2").click();
            harness.run();
            assert_eq!(harness.state().1.selected_queries, [2]);
            // Each head has 12 × 10 links of 0.1 at the default threshold 0.05.
            let live = |harness: &Harness<'_, Tested>, t: f32| -> Vec<usize> {
                let cache = harness.state().0.cache.as_ref();
                (0..3)
                    .map(|h| cache.map_or(0, |c| c.live(h, t).len()))
                    .collect()
            };
            assert_eq!(live(&harness, 0.05), [120, 120, 120]);
            // Raising the threshold keeps the extracted links and takes a prefix.
            harness.state_mut().1.head_view_threshold = 0.5;
            harness.run();
            assert_eq!(harness.state().0.cache.as_ref().map(|c| c.base), Some(0.02));
            assert_eq!(live(&harness, 0.5), [0, 0, 0]);
            // Lowering it below the base re-extracts.
            harness.state_mut().1.head_view_threshold = 0.01;
            harness.run();
            assert_eq!(harness.state().0.cache.as_ref().map(|c| c.base), Some(0.01));
            assert_eq!(live(&harness, 0.01), [120, 120, 120]);
        }

        #[test]
        fn many_tokens_stay_fast() {
            let mut harness = harness(spread_run(8, 512));
            harness.run();
            // Not hovered: every link crossing the viewport is drawn.
            let start = std::time::Instant::now();
            let frames = 5;
            for _ in 0..frames {
                harness.step();
            }
            let per_frame = start.elapsed() / frames;
            eprintln!("head view, 512 tokens × 8 heads, no hover: {per_frame:?} per frame");
            assert!(per_frame < std::time::Duration::from_millis(500));
            // A threshold below the base re-extracts every head's links in that frame.
            harness.state_mut().1.head_view_threshold = 0.01;
            let start = std::time::Instant::now();
            harness.step();
            eprintln!(
                "head view, 512 tokens × 8 heads, re-extraction: {:?}",
                start.elapsed()
            );
            harness.get_by_label("query 5: t5").hover();
            let start = std::time::Instant::now();
            let frames = 5;
            for _ in 0..frames {
                harness.step();
            }
            let per_frame = start.elapsed() / frames;
            eprintln!("head view, 512 tokens × 8 heads: {per_frame:?} per frame");
            // Generous: unoptimised test builds on a shared machine.
            assert!(per_frame < std::time::Duration::from_millis(500));
        }
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(short_label("cat"), "cat");
        let long = "a".repeat(30);
        assert_eq!(short_label(&long).chars().count(), MAX_LABEL_CHARS);
    }
}

//! The command line's arguments: the clap structs of every subcommand.

use crate::engine::NormPlacement;
use crate::model::{DemoConfig, DemoPositional};
use crate::render::{Colormap, RangeMode};
use crate::tokenize::DemoTokenizer;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// attnviz: show, explain and export transformer attention maps.
#[derive(Debug, Parser)]
#[command(
    name = "attnviz",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; without a subcommand the app opens.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A file to open in the app: text (.txt), tokens (.json with "text", "tokens" or
    /// "token_ids"), an attention file (attnviz JSON or .npy), a session (.attnviz.json) or a
    /// lesson (attnviz.lesson/v1 JSON).
    pub file: Option<PathBuf>,
    /// Render the app's first frames, save a screenshot to this PNG and exit.
    #[arg(long, value_name = "PNG")]
    pub screenshot: Option<PathBuf>,
    /// Open the app on this checkpoint folder (or .gguf file) instead of the demo model.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the model and write every layer's and head's attention (JSON or NPY).
    Export(ExportArgs),
    /// Run the model and render one head, a head combination, or the layer × head grid to PNG.
    Render(RenderArgs),
    /// Print the model's architecture.
    Info(InfoArgs),
    /// Run a checkpoint with an LM head and print its most likely next tokens.
    Next(NextArgs),
    /// Write one query of one head step by step (q, keys, scores, scale, mask, softmax,
    /// values, output) as `attnviz.explain/v1` JSON.
    Explain(ExplainArgs),
    /// Score every input token for how much it drives a target (saliency): gradients,
    /// integrated gradients, attention-gradient, occlusion, attention or rollout.
    Attribute(Box<AttributeArgs>),
    /// Analyse every head: `--what metrics` writes per-head metrics (entropy, previous-token,
    /// self, first-token sinks, …) as `attnviz.metrics/v1` JSON; `rollout`, `flow` and
    /// `value-zeroing` write how the tokens mix across layers.
    Analyze(AnalyzeArgs),
}

/// What `attnviz analyze` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeWhat {
    /// Per-head metrics (`attnviz.metrics/v1`).
    Metrics,
    /// The attention rollout (`attnviz.rollout/v1`).
    Rollout,
    /// What every layer would predict (`attnviz.logit_lens/v1`).
    LogitLens,
    /// Each head's, MLP's and the embeddings' direct contribution to the target's logit
    /// (`attnviz.contributions/v1`).
    Contributions,
    /// The information-flow routes to one position (`attnviz.routes/v1`).
    Routes,
    /// Activation patching of `--text` (clean) into `--text-b` (corrupted) (`attnviz.patching/v1`).
    Patching,
    /// The attention flow into one position (`attnviz.flow/v1`).
    Flow,
    /// Value zeroing, per layer and across layers (`attnviz.value_zeroing/v1`).
    ValueZeroing,
}

/// An extra run `attnviz analyze --what metrics` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Probe {
    /// A seeded random sequence repeated twice: each head's induction score.
    Induction,
}

/// `attnviz analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Input and model options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to compute.
    #[arg(long, value_enum)]
    pub what: AnalyzeWhat,
    /// Rollout and flow: the weight of the attention against the identity (the residual), in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Rollout and flow: how the heads of a layer are fused: mean, max or min.
    #[arg(long, default_value = "mean")]
    pub fusion: crate::analysis::rollout::HeadFusion,
    /// Rollout and flow: the layers, `A-B` (0-based, inclusive); every layer by default. (Not
    /// `--layers`, which sets the demo model's layer count.)
    #[arg(long, value_name = "A-B")]
    pub layer_range: Option<String>,
    /// Logit lens, contributions, routes, patching: the target, as `attribute` takes it:
    /// logprob[:P[:T]] or contrast:P:T:F (default: the model's own top-1 after the last token).
    #[arg(long, value_name = "SPEC")]
    pub target: Option<crate::grad::TargetSpec>,
    /// Logit lens: the positions to read, N (0-based) or `all`; routes: the output position.
    #[arg(long, value_name = "N|all")]
    pub position: Option<String>,
    /// Logit lens: how many top tokens per cell.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Routes: the smallest importance an edge keeps, in [0.005, 1].
    #[arg(long, default_value_t = crate::analysis::answer::routes::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Patching: the corrupted text (the same number of tokens as the clean `--text`).
    #[arg(long, value_name = "TEXT")]
    pub text_b: Option<String>,
    /// Patching: the site patched: resid, attn, mlp or head.
    #[arg(long, default_value = "resid")]
    pub site: crate::analysis::answer::patching::PatchSite,
    /// Flow: the output position (0-based); the last token by default.
    #[arg(long, value_name = "Q")]
    pub query: Option<usize>,
    /// Flow: also write the flows divided by their sum (`flow_normalized`).
    #[arg(long)]
    pub normalize_flow: bool,
    /// Metrics: also run a probe (`induction`: each head's induction score).
    #[arg(long, value_enum)]
    pub probe: Option<Probe>,
    /// Output: .json; for logit-lens, contributions, routes and patching also .png or .svg
    /// (the figure).
    #[arg(long, value_name = "FILE.json|png|svg")]
    pub out: PathBuf,
    /// Multiply every length of a PNG figure (1..=8).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::render::figure::MAX_PIXEL_SCALE)))]
    pub pixel_scale: u32,
}

/// Where the tokens come from, and how the model runs.
#[derive(Debug, Args)]
#[group(id = "source", required = true, multiple = false, args = ["input", "text", "ids"])]
pub struct CommonArgs {
    /// Input file: .txt text, .json tokens ({"text"}, {"tokens"} or {"token_ids"}), or an attention file.
    pub input: Option<PathBuf>,
    /// Text to tokenize.
    #[arg(long)]
    pub text: Option<String>,
    /// Token ids, comma-separated; skips the tokenizer.
    #[arg(long, value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
    /// `demo`, a model folder, or a .gguf file.
    #[arg(long, default_value = "demo", value_name = "DIR|demo")]
    pub model: String,
    /// Mask spec, `+`-joined: none, causal, padding, window:W, strided:S, block:B, global:I,J,
    /// drop-keys:I,J, drop-queries:I,J, drop-cells:Q.K,Q.K.
    #[arg(long, default_value = "none", value_name = "SPEC")]
    pub mask: String,
    /// Keep only these query/key dimensions of head H in layer L, e.g. 0.3=0-7,12 (repeatable).
    #[arg(long = "dims", value_name = "L.H=DIMS")]
    pub dims: Vec<String>,
    /// Ablate head H of layer L (repeatable): L.H zeroes its output z_h before the output
    /// projection, L.H:mean replaces z_h at every position by its mean over the positions.
    #[arg(long = "ablate", value_name = "L.H[:mean]")]
    pub ablate: Vec<crate::engine::Ablation>,
    /// Score scale: inv-sqrt (1/√d_head), none, or temperature:T.
    #[arg(long, default_value = "inv-sqrt", value_name = "SCALE")]
    pub scale: String,
    /// Make a classic mistake on purpose (repeatable): no-scaling, no-positions,
    /// no-causal-mask, wrong-axis, elementwise-values, no-layernorm, chunk-by-heads.
    #[arg(long = "mistake", value_name = "NAME")]
    pub mistakes: Vec<crate::engine::Mistake>,
    /// Print one JSON line of timings on stderr.
    #[arg(long)]
    pub timings: bool,
    /// Cut inputs longer than the model's position limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Most memory the run may need, e.g. 8GiB or 512MB (units are 1024-based); by default
    /// the smaller of 8 GiB and half the physical memory. Checked before the run allocates.
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<crate::pipeline::ByteSize>,
    /// The demo model's settings.
    #[command(flatten)]
    pub demo: DemoArgs,
}

/// Settings of the built-in demo model.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Demo tokenizer: words (words and punctuation) or chars.
    #[arg(long, default_value = "words")]
    pub tokenizer: DemoTokenizer,
    /// Demo layers (1..=24).
    #[arg(long, default_value_t = DemoConfig::default().layers)]
    pub layers: usize,
    /// Demo heads per layer (1..=32, dividing d_model).
    #[arg(long, default_value_t = DemoConfig::default().heads)]
    pub heads: usize,
    /// Demo residual width (8..=1024).
    #[arg(long, default_value_t = DemoConfig::default().d_model)]
    pub d_model: usize,
    /// Demo positional encoding: none, sinusoidal, learned, rope or alibi.
    #[arg(long = "pe", default_value = "sinusoidal")]
    pub positional: DemoPositional,
    /// Demo LayerNorm placement: pre, post or none.
    #[arg(long, default_value = "pre")]
    pub layer_norm: NormPlacement,
    /// Demo weight seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DemoArgs {
    /// The demo model's config from these settings.
    pub fn config(&self) -> DemoConfig {
        DemoConfig {
            layers: self.layers,
            heads: self.heads,
            d_model: self.d_model,
            positional: self.positional,
            norm: self.layer_norm,
            seed: self.seed,
        }
    }
}

/// File format of `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `attnviz.attention/v1` JSON.
    Json,
    /// NPY [L, H, N, N] float32 plus a `.tokens.json` sidecar.
    Npy,
}

/// `attnviz export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Input and model options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output file.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Output format; by default from the extension (.npy is NPY, anything else JSON).
    #[arg(long)]
    pub format: Option<ExportFormat>,
    /// Largest file to write, e.g. 4GiB (units are 1024-based; default 1 GiB). The size is
    /// estimated before anything is written.
    #[arg(long, value_name = "SIZE")]
    pub max_output: Option<crate::pipeline::ByteSize>,
    /// After the run, repeat its forward pass N more times and report their median as
    /// `forward_warm_ms` in `--timings`: what the same pass costs once the process is warm,
    /// next to the first one's `forward_ms`. Nothing else changes; the repeats are not written.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warm_runs: usize,
}

/// What `render` draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum View {
    /// One head (or a combination) as a heatmap.
    Heatmap,
    /// Every layer × head as thumbnails.
    Grid,
}

/// `attnviz render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Input and model options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output file: PNG, or SVG when it ends in .svg (vector text and colorbar, cells as
    /// rectangles or an embedded PNG).
    #[arg(long, value_name = "PNG|SVG")]
    pub out: PathBuf,
    /// Layer to show (0-based), or mean over all layers.
    #[arg(long, default_value = "0", value_name = "L|mean")]
    pub layer: String,
    /// Head to show (0-based), mean or max over the layer's heads, or the mean of a set (0,2,5).
    #[arg(long, default_value = "0", value_name = "H|mean|max|H,H,...")]
    pub head: String,
    /// Colours on a log scale.
    #[arg(long)]
    pub log: bool,
    /// Value range of the colours: per-head (the map's own) or shared (over all heads).
    #[arg(long, default_value = "per-head", value_name = "per-head|shared")]
    pub range: RangeMode,
    /// Drop special tokens ([CLS], [SEP], [PAD], …) and renormalise each row.
    #[arg(long)]
    pub hide_special: bool,
    /// Heatmap of one head, or the grid of all heads.
    #[arg(long, value_enum, default_value = "heatmap")]
    pub view: View,
    /// Colormap: viridis, magma, inferno, plasma, grays, diverging, or the high-contrast hot
    /// and turbo (for projectors).
    #[arg(long, default_value = "viridis")]
    pub colormap: Colormap,
    /// Only the cells: no labels, title or colorbar.
    #[arg(long)]
    pub no_labels: bool,
    /// Pixels per cell (heatmap), or per thumbnail side (grid).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cell: Option<u32>,
    /// Multiply every length (cells, text, margins) for a high-resolution PNG; in an SVG, the
    /// resolution of the embedded cells. `--scale` is the attention score scale.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::render::figure::MAX_PIXEL_SCALE)))]
    pub pixel_scale: u32,
    /// Most pixels (width × height) the PNG may have, checked before drawing.
    #[arg(long, value_name = "N", default_value_t = crate::render::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
}

/// `attnviz info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `demo`, a model folder, or a .gguf file.
    #[arg(long, default_value = "demo", value_name = "DIR|demo")]
    pub model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The demo model's settings.
    #[command(flatten)]
    pub demo: DemoArgs,
}

/// `attnviz next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// Input and model options (the model must be a checkpoint with an LM head).
    #[command(flatten)]
    pub common: CommonArgs,
    /// How many tokens to list per position.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
    /// The position (0-based) whose next token is predicted, or `all`; by default the last.
    #[arg(long, value_name = "N|all")]
    pub position: Option<String>,
    /// Print JSON (`attnviz.next/v1`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `attnviz explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Input and model options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The layer (0-based).
    #[arg(long)]
    pub layer: usize,
    /// The query head (0-based).
    #[arg(long)]
    pub head: usize,
    /// The query token (0-based).
    #[arg(long)]
    pub query: usize,
    /// Output JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub out: PathBuf,
}

/// `attnviz attribute`.
#[derive(Debug, Args)]
pub struct AttributeArgs {
    /// Input and model options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// gradient, input-x-gradient, integrated-gradients, attention-gradient, occlusion,
    /// attention or rollout.
    #[arg(long, value_name = "METHOD")]
    pub method: crate::analysis::attribution::Method,
    /// What to explain: logprob[:P[:T]], contrast:P:T:F, mlm:P[:T] or similarity (0-based P;
    /// T and F are ids or vocabulary strings in double quotes, e.g. logprob:5:"Ġhe").
    #[arg(long, value_name = "TARGET")]
    pub target: crate::grad::TargetSpec,
    /// The second text of the similarity target.
    #[arg(long, value_name = "TEXT")]
    pub text_b: Option<String>,
    /// Integrated-gradient steps (only with integrated-gradients; default 32).
    #[arg(long, value_name = "M")]
    pub steps: Option<usize>,
    /// Integrated-gradient baseline: zero, pad or mask (only with integrated-gradients).
    #[arg(long, value_name = "zero|pad|mask")]
    pub baseline: Option<crate::analysis::attribution::Baseline>,
    /// How occlusion hides a token: mask, unk or remove (default: the tokenizer's mask token,
    /// else its unknown token, else remove).
    #[arg(long, value_name = "mask|unk|remove")]
    pub occlude: Option<crate::analysis::attribution::Occlude>,
    /// Scores per token, or summed per word.
    #[arg(long, default_value = "token", value_name = "token|word")]
    pub aggregate: crate::analysis::attribution::Aggregate,
    /// Greedily generate K tokens and attribute each one's log-probability over the tokens
    /// before it (causal LMs; --target logprob).
    #[arg(long, value_name = "K")]
    pub generate: Option<usize>,
    /// Output: .json (attnviz.attribution/v1), .csv, .png or .svg (the saliency figure).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Multiply every length of a PNG figure (1..=8).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::render::figure::MAX_PIXEL_SCALE)))]
    pub pixel_scale: u32,
}

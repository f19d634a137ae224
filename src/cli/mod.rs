//! The command line: `export`, `render`, `info` and `next`. Thin glue over the library modules.
//!
//! Errors come back as `anyhow` errors with context; `main` prints them as one `error:` line and
//! exits with status 1. clap's own usage errors exit with 2.

use crate::analysis::{HeadSelection, LayerSelection, ViewSpec};
use crate::engine::NormPlacement;
use crate::engine::{DimSubset, MaskSpec, RunOptions, ScoreScale, effective_mask};
use crate::io::{self, InputFile, ModelMeta, TokenInput};
use crate::model::{Checkpoint, DemoConfig, DemoModel, DemoPositional, Model, ModelInfo};
use crate::render::{self, Colormap, RangeMode, RenderStyle, ValueScale};
use crate::tokenize::{self, DemoTokenizer, Token};
use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// A file to open in the app: text or tokens (.txt, .json) or an attention file.
    pub file: Option<PathBuf>,
    /// Render the app's first frames, save a screenshot to this PNG and exit.
    #[arg(long, value_name = "PNG")]
    pub screenshot: Option<PathBuf>,
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
    /// `demo`, or a model folder.
    #[arg(long, default_value = "demo", value_name = "DIR|demo")]
    pub model: String,
    /// Mask spec, `+`-joined: none, causal, padding, window:W, strided:S, block:B, global:I,J,
    /// drop-keys:I,J, drop-queries:I,J, drop-cells:Q.K,Q.K.
    #[arg(long, default_value = "none", value_name = "SPEC")]
    pub mask: String,
    /// Keep only these query/key dimensions of head H in layer L, e.g. 0.3=0-7,12 (repeatable).
    #[arg(long = "dims", value_name = "L.H=DIMS")]
    pub dims: Vec<String>,
    /// Score scale: inv-sqrt (1/√d_head), none, or temperature:T.
    #[arg(long, default_value = "inv-sqrt", value_name = "SCALE")]
    pub scale: String,
    /// Print one JSON line of timings on stderr.
    #[arg(long)]
    pub timings: bool,
    /// Cut inputs longer than the model's position limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
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
    fn config(&self) -> DemoConfig {
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
    /// Output PNG.
    #[arg(long, value_name = "PNG")]
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
    /// Colormap: viridis, magma, inferno, plasma, grays or diverging.
    #[arg(long, default_value = "viridis")]
    pub colormap: Colormap,
    /// Only the cells: no labels, title or colorbar.
    #[arg(long)]
    pub no_labels: bool,
    /// Pixels per cell (heatmap), or per thumbnail side (grid).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cell: Option<u32>,
}

/// `attnviz info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `demo`, or a model folder.
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

/// Runs a subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Export(args) => export(args),
        Command::Render(args) => render_cmd(args),
        Command::Info(args) => info(args),
        Command::Next(args) => next(args),
    }
}

/// Wall-clock phases for `--timings`.
#[derive(Default, serde::Serialize)]
struct Timings {
    load_ms: f64,
    tokenize_ms: f64,
    forward_ms: f64,
    write_ms: f64,
}

fn ms_since(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// The demo, or a checkpoint folder.
enum Loaded {
    Demo(Box<DemoModel>),
    Checkpoint(Box<Checkpoint>),
}

impl Loaded {
    fn model(&self) -> &dyn Model {
        match self {
            Loaded::Demo(m) => m.as_ref(),
            Loaded::Checkpoint(m) => m.as_ref(),
        }
    }
}

fn load_model(model: &str, demo: &DemoArgs) -> Result<Loaded> {
    if model == "demo" {
        return DemoModel::new(demo.config())
            .map(|m| Loaded::Demo(Box::new(m)))
            .map_err(|e| anyhow!("demo model: {e}"));
    }
    Ok(Loaded::Checkpoint(Box::new(Checkpoint::load(Path::new(
        model,
    ))?)))
}

/// Attention that came either from running the model or from a file.
struct Computed {
    meta: ModelMeta,
    tokens: Vec<Token>,
    mask: String,
    maps: crate::engine::AttentionMaps,
    /// The model that ran, when one did.
    model: Option<Loaded>,
    /// Final hidden states, when asked for and a model ran. Shape: [token, d_model].
    hidden: Option<ndarray::Array2<f32>>,
}

fn compute(common: &CommonArgs, timings: &mut Timings) -> Result<Computed> {
    compute_with(common, timings, false)
}

fn compute_with(common: &CommonArgs, timings: &mut Timings, keep_hidden: bool) -> Result<Computed> {
    let start = Instant::now();
    // Options are checked before anything heavy, so that a bad spec fails fast.
    let mask = MaskSpec::parse(&common.mask).map_err(|e| anyhow!("{e}"))?;
    let scale: ScoreScale = common.scale.parse().map_err(|e: String| anyhow!(e))?;
    let dims = common
        .dims
        .iter()
        .map(|d| d.parse::<DimSubset>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow!(e))?;
    let file = match &common.input {
        Some(path) => Some(io::load_input(path)?),
        None => None,
    };
    if let Some(InputFile::Attention(file)) = file {
        timings.load_ms = ms_since(start);
        let tokens = file
            .tokens
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut t = Token::from_text(text);
                if let Some(&id) = file.token_ids.get(i) {
                    t.id = id;
                }
                t
            })
            .collect();
        return Ok(Computed {
            meta: file.model,
            tokens,
            mask: file.mask,
            maps: file.maps,
            model: None,
            hidden: None,
        });
    }
    let model = load_model(&common.model, &common.demo)?;
    timings.load_ms = ms_since(start);
    let start = Instant::now();
    let input = match (&file, &common.text, &common.ids) {
        (Some(InputFile::Input(input)), _, _) => input.clone(),
        (Some(InputFile::Session(_)), _, _) => {
            let path = common.input.as_deref().unwrap_or(Path::new(""));
            bail!(
                "session files open in the app (attnviz {}), not here: {}",
                path.display(),
                path.display()
            );
        }
        (_, Some(text), _) => TokenInput::Text(text.clone()),
        (_, _, Some(ids)) => TokenInput::Ids(ids.clone()),
        _ => bail!("no input: give an INPUT file, --text or --ids"),
    };
    let empty = || tokenize::TokenizeError::Empty.to_string();
    let tokens: Result<Vec<Token>, String> = match (&model, input) {
        (Loaded::Demo(_), TokenInput::Text(text)) => {
            tokenize::tokenize(&text, common.demo.tokenizer).map_err(|e| e.to_string())
        }
        (Loaded::Checkpoint(c), TokenInput::Text(text)) => c.tokenize(&text),
        (Loaded::Demo(_), TokenInput::Tokens(texts)) => {
            let tokens: Vec<Token> = texts.iter().map(|t| Token::from_text(t)).collect();
            if tokens.is_empty() {
                Err(empty())
            } else {
                Ok(tokens)
            }
        }
        (Loaded::Checkpoint(_), TokenInput::Tokens(_)) => {
            Err("a checkpoint needs text or token ids, not token strings".to_owned())
        }
        (_, TokenInput::Ids(ids)) if ids.is_empty() => Err(empty()),
        (Loaded::Demo(_), TokenInput::Ids(ids)) => Ok(tokenize::tokens_from_ids(&ids)),
        (Loaded::Checkpoint(c), TokenInput::Ids(ids)) => Ok(c.tokens_from_ids(&ids)),
    };
    let mut tokens = match (tokens, &common.input) {
        (Ok(t), _) => t,
        (Err(e), Some(path)) => bail!("{e} in {}", path.display()),
        (Err(e), None) => bail!("{e}"),
    };
    let limit = model.model().info().max_positions;
    if tokens.len() > limit {
        if !common.truncate {
            bail!(
                "{} tokens exceed the model's limit of {limit}; pass --truncate to cut the input",
                tokens.len()
            );
        }
        tokens.truncate(limit);
    }
    timings.tokenize_ms = ms_since(start);
    let start = Instant::now();
    let opts = RunOptions {
        mask: mask.clone(),
        scale,
        dims,
        keep_hidden,
        ..RunOptions::default()
    };
    let run = model.model().forward(&tokens, &opts)?;
    timings.forward_ms = ms_since(start);
    let info = model.model().info();
    Ok(Computed {
        meta: ModelMeta::from(&info),
        tokens: run.tokens,
        mask: effective_mask(&mask, info.causal).to_string(),
        maps: run.maps,
        model: Some(model),
        hidden: run.hidden,
    })
}

fn print_timings(enabled: bool, timings: &Timings) {
    if enabled && let Ok(line) = serde_json::to_string(timings) {
        eprintln!("{line}");
    }
}

fn export(args: ExportArgs) -> Result<()> {
    let mut timings = Timings::default();
    let computed = compute(&args.common, &mut timings)?;
    let start = Instant::now();
    let format = args.format.unwrap_or_else(|| {
        let npy = args
            .out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if npy {
            ExportFormat::Npy
        } else {
            ExportFormat::Json
        }
    });
    match format {
        ExportFormat::Json => io::write_atomic(&args.out, |out| {
            io::write_attention_json(
                out,
                &computed.meta,
                &computed.tokens,
                &computed.mask,
                &computed.maps,
            )
        })?,
        ExportFormat::Npy => {
            let texts: Vec<String> = computed.tokens.iter().map(|t| t.text.clone()).collect();
            io::write_npy(&args.out, &computed.maps, &texts)?;
        }
    }
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

/// Pixels per cell when `--cell` is not given: about 768 pixels across, 1 to 32 per cell.
fn default_cell(len: usize) -> u32 {
    (768 / len.max(1)).clamp(1, 32) as u32
}

fn render_cmd(args: RenderArgs) -> Result<()> {
    let heads: HeadSelection = args.head.parse().map_err(|e: String| anyhow!(e))?;
    let layer: LayerSelection = args.layer.parse().map_err(|e: String| anyhow!(e))?;
    let mut timings = Timings::default();
    let computed = compute(&args.common, &mut timings)?;
    let start = Instant::now();
    // Figures show labels as the app does: the checkpoint tokenizer's style; the demo and
    // attention files (which name no tokenizer) show the strings as they are.
    let vocab = match &computed.model {
        Some(Loaded::Checkpoint(_)) => tokenize::vocab_style_of_dir(Path::new(&args.common.model)),
        _ => tokenize::VocabStyle::Plain,
    };
    let ctx = render::FigureContext::from_tokens(
        &computed.tokens,
        &vocab,
        &computed.meta.name,
        &computed.mask,
    );
    let style = RenderStyle {
        colormap: args.colormap,
        scale: if args.log {
            ValueScale::Log
        } else {
            ValueScale::Linear
        },
        range: args.range,
        cell_px: args.cell.unwrap_or(match args.view {
            View::Heatmap => default_cell(computed.maps.len()),
            View::Grid => 96,
        }),
        labels: !args.no_labels,
        pixel_scale: 1,
    };
    let spec = ViewSpec {
        layer,
        heads,
        hide_special: args.hide_special,
    };
    let svg = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        let doc = match args.view {
            View::Heatmap => render::view_svg(&computed.maps, &ctx, &spec, &style),
            View::Grid => render::grid_view_svg(&computed.maps, &ctx, &style),
        }
        .map_err(|e| anyhow!(e))?;
        render::write_svg(&doc, &args.out)?;
    } else {
        let image = match args.view {
            View::Heatmap => render::view_figure(&computed.maps, &ctx, &spec, &style),
            View::Grid => render::grid_view_figure(&computed.maps, &ctx, &style),
        }
        .map_err(|e| anyhow!(e))?;
        render::write_png(&image, &args.out)?;
    }
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

fn info(args: InfoArgs) -> Result<()> {
    let model = load_model(&args.model, &args.demo)?;
    let info = model.model().info();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).context("serialising model info")?
        );
    } else {
        print!("{}", info_text(&info, &model));
    }
    Ok(())
}

fn info_text(info: &ModelInfo, model: &Loaded) -> String {
    let mut s = format!(
        "model         {}\narchitecture  {}\nlayers        {}\nheads         {} (kv heads {})\nd_model       {}\nd_head        {}\nd_ff          {}\nvocab         {}\nparameters    {}\ndtype         {}\npositions     {} (max {} tokens)\nlayer norm    {}\ncausal        {}\n",
        info.name,
        info.architecture,
        info.layers,
        info.heads,
        info.kv_heads,
        info.d_model,
        info.d_head,
        info.d_ff,
        info.vocab
            .map_or("none (hashed tokens)".to_owned(), |v| v.to_string()),
        info.params,
        info.dtype,
        info.positional,
        info.max_positions,
        info.norm,
        info.causal,
    );
    if let Loaded::Checkpoint(_) = model {
        s.push_str(&format!(
            "lm head       {}\n",
            lm_head_text(info.lm_head.as_ref())
        ));
    }
    let mut crafted = Vec::new();
    match model {
        Loaded::Demo(demo) => {
            for l in 0..info.layers {
                for h in 0..info.heads {
                    if let Some(kind) = demo.crafted_head(l, h) {
                        crafted.push(format!("L{l}·H{h} {}", kind.label()));
                    }
                }
            }
        }
        Loaded::Checkpoint(c) if info.kv_heads < info.heads => {
            let groups: Vec<String> = c
                .kv_groups()
                .iter()
                .map(|g| g.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
                .collect();
            s.push_str(&format!(
                "kv groups     query heads {}\n",
                groups.join(" | ")
            ));
        }
        Loaded::Checkpoint(_) => {}
    }
    if !crafted.is_empty() {
        s.push_str(&format!("crafted heads {}\n", crafted.join(", ")));
    }
    s
}

fn lm_head_text(head: Option<&crate::model::LmHeadInfo>) -> String {
    match head {
        None => "none".to_owned(),
        Some(h) if h.tied => format!("tied to {} (vocab {})", h.tensor, h.vocab),
        Some(h) => format!("untied, {} (vocab {})", h.tensor, h.vocab),
    }
}

/// `attnviz next`'s JSON: `attnviz.next/v1`.
#[derive(serde::Serialize)]
struct NextJson<'a> {
    format: &'static str,
    model: &'a str,
    lm_head: &'a crate::model::LmHeadInfo,
    tokens: Vec<&'a str>,
    token_ids: Vec<u32>,
    mask: &'a str,
    predictions: Vec<PositionJson<'a>>,
}

/// The top next tokens after one position.
#[derive(serde::Serialize)]
struct PositionJson<'a> {
    position: usize,
    token: &'a str,
    top: Vec<crate::model::Prediction>,
}

fn next(args: NextArgs) -> Result<()> {
    if args.common.model == "demo" {
        bail!("the demo model has no LM head; give --model DIR with a GPT-2 or Llama checkpoint");
    }
    // The position is checked before the model runs, once the length is known (below).
    let positions = args.position.as_deref().map(str::trim);
    let parsed: Option<Option<usize>> = match positions {
        None => None,
        Some("all") => Some(None),
        Some(p) => Some(Some(p.parse::<usize>().map_err(|_| {
            anyhow!("bad --position {p:?}; expected a 0-based token index or all")
        })?)),
    };
    let mut timings = Timings::default();
    let computed = compute_with(&args.common, &mut timings, true)?;
    let (Some(Loaded::Checkpoint(ckpt)), Some(hidden)) = (&computed.model, &computed.hidden) else {
        bail!(
            "next-token predictions need a model run: give text or token ids, not an attention file"
        );
    };
    let dir = &args.common.model;
    let head = ckpt.lm_head().ok_or_else(|| {
        anyhow!(
            "the model has no next-token LM head (a BERT model, or no lm_head.weight and untied embeddings) in {dir}"
        )
    })?;
    let n = computed.tokens.len();
    let start = Instant::now();
    let wanted: Vec<usize> = match parsed {
        None => vec![n.saturating_sub(1)],
        Some(None) => (0..n).collect(),
        Some(Some(p)) if p >= n => {
            bail!("--position {p} is out of range: the input has {n} tokens (0-based)")
        }
        Some(Some(p)) => vec![p],
    };
    let mut predictions = Vec::with_capacity(wanted.len());
    for &position in &wanted {
        let top = ckpt.top_next_tokens(hidden.view(), position, args.top as usize)?;
        predictions.push(PositionJson {
            position,
            token: computed.tokens[position].text.as_str(),
            top,
        });
    }
    timings.write_ms = ms_since(start);
    if args.json {
        let out = NextJson {
            format: "attnviz.next/v1",
            model: &computed.meta.name,
            lm_head: &head,
            tokens: computed.tokens.iter().map(|t| t.text.as_str()).collect(),
            token_ids: computed.tokens.iter().map(|t| t.id).collect(),
            mask: &computed.mask,
            predictions,
        };
        println!(
            "{}",
            serde_json::to_string(&out).context("serialising predictions")?
        );
    } else {
        print!("{}", next_text(&head, &predictions));
    }
    print_timings(args.common.timings, &timings);
    Ok(())
}

fn next_text(head: &crate::model::LmHeadInfo, predictions: &[PositionJson<'_>]) -> String {
    let mut s = format!("lm head {}\n", lm_head_text(Some(head)));
    for p in predictions {
        s.push_str(&format!("after position {} {:?}:\n", p.position, p.token));
        for (rank, t) in p.top.iter().enumerate() {
            s.push_str(&format!(
                "  {:>2}. {:<20} id {:<7} log-prob {:>9.4}  p {:.4}\n",
                rank + 1,
                format!("{:?}", t.token),
                t.id,
                t.logprob,
                t.logprob.exp()
            ));
        }
    }
    s
}

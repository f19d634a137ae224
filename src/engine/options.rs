//! What a forward pass is asked to do: the mask, the score scale, ablations, dimension subsets
//! and how much to capture.

use super::intervene::Ablation;
use super::mask::MaskSpec;
use serde::{Deserialize, Serialize};

/// The smallest temperature accepted: below it every softmax is one-hot or, in f32, all zeros.
pub const MIN_TEMPERATURE: f32 = 1e-3;
/// The largest temperature accepted: above it every map is uniform to six digits.
pub const MAX_TEMPERATURE: f32 = 1e3;
/// Dimension indices in `--dims` must be below this (the widest head a config may declare).
pub const MAX_HEAD_DIMS: usize = 1 << 16;

/// How raw scores q·k are scaled before the softmax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ScoreScale {
    /// Divide by √d_head (the standard).
    #[default]
    InvSqrtDHead,
    /// Use q·k as is.
    None,
    /// Divide by √d_head and then by this temperature, in
    /// [[`MIN_TEMPERATURE`], [`MAX_TEMPERATURE`]].
    Temperature(f32),
}

impl ScoreScale {
    /// The factor that multiplies q·k for a head of width `d_head`.
    pub fn factor(self, d_head: usize) -> f32 {
        let inv_sqrt = 1.0 / (d_head as f32).sqrt();
        match self {
            ScoreScale::InvSqrtDHead => inv_sqrt,
            ScoreScale::None => 1.0,
            ScoreScale::Temperature(t) => inv_sqrt / t,
        }
    }
}

impl std::fmt::Display for ScoreScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreScale::InvSqrtDHead => write!(f, "inv-sqrt"),
            ScoreScale::None => write!(f, "none"),
            ScoreScale::Temperature(t) => write!(f, "temperature:{t}"),
        }
    }
}

impl std::str::FromStr for ScoreScale {
    type Err = String;

    /// Reads `inv-sqrt`, `none` or `temperature:T` with T in [1e-3, 1e3].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "inv-sqrt" | "default" => Ok(Self::InvSqrtDHead),
            "none" => Ok(Self::None),
            other => {
                let t = other
                    .strip_prefix("temperature:")
                    .and_then(|t| t.parse::<f32>().ok())
                    .filter(|t| (MIN_TEMPERATURE..=MAX_TEMPERATURE).contains(t))
                    .ok_or_else(|| {
                        format!(
                            "bad score scale {other:?}; expected inv-sqrt, none or temperature:T \
                             with T in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]"
                        )
                    })?;
                Ok(Self::Temperature(t))
            }
        }
    }
}

/// Keep only some query/key dimensions of one head: the others are zeroed before q·k.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimSubset {
    /// Layer index.
    pub layer_idx: usize,
    /// Head index within the layer.
    pub head_idx: usize,
    /// Dimensions of the head (0-based, < d_head) that stay.
    pub dims: Vec<usize>,
}

impl std::fmt::Display for DimSubset {
    /// `L.H=0-7,12`, as `--dims` reads it: runs of consecutive dimensions written as ranges.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}=", self.layer_idx, self.head_idx)?;
        let mut dims = self.dims.clone();
        dims.sort_unstable();
        dims.dedup();
        let mut first = true;
        let mut i = 0;
        while i < dims.len() {
            let start = dims[i];
            while i + 1 < dims.len() && dims[i + 1] == dims[i] + 1 {
                i += 1;
            }
            if !first {
                write!(f, ",")?;
            }
            first = false;
            if dims[i] == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{}", dims[i])?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// How a run's numbers were made besides the model, the input and the applied mask: the score
/// scale, the dimension subsets, the classic mistakes and the ablations, spelled as the CLI
/// reads them. The one `options` object of every `attnviz.*/v1` JSON, and the tail of every
/// figure title (through `render::FigureContext`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptionsRecord {
    /// `inv-sqrt`, `none` or `temperature:T`.
    pub scale: String,
    /// `L.H=0-7,12` per head with a dimension subset.
    #[serde(default)]
    pub dims: Vec<String>,
    /// The mistakes made on purpose, by CLI name.
    #[serde(default)]
    pub mistakes: Vec<String>,
    /// The ablated heads, `L.H` or `L.H:mean`.
    #[serde(default)]
    pub ablations: Vec<String>,
}

impl OptionsRecord {
    /// The record of `options`.
    pub fn of(options: &RunOptions) -> OptionsRecord {
        OptionsRecord {
            scale: options.scale.to_string(),
            dims: options.dims.iter().map(ToString::to_string).collect(),
            mistakes: options.mistakes.iter().map(ToString::to_string).collect(),
            ablations: options.ablations.iter().map(ToString::to_string).collect(),
        }
    }

    /// What a title says of the options that change the numbers, when they differ from the
    /// defaults: ` · scale none`, ` · temperature:2`, ` · dims 0.3=0-7`, ` · mistake
    /// no-scaling` (ablations are said by the title's own ablation part); empty otherwise.
    pub fn title(&self) -> String {
        let mut out = String::new();
        if self.scale != ScoreScale::InvSqrtDHead.to_string() {
            out.push_str(&format!(" · scale {}", self.scale));
        }
        if !self.dims.is_empty() {
            out.push_str(&format!(" · dims {}", self.dims.join(" ")));
        }
        if !self.mistakes.is_empty() {
            let word = if self.mistakes.len() == 1 {
                "mistake"
            } else {
                "mistakes"
            };
            out.push_str(&format!(" · {word} {}", self.mistakes.join(", ")));
        }
        out
    }
}

impl std::str::FromStr for DimSubset {
    type Err = String;

    /// Reads `L.H=0-7,12`. Indices must be below [`MAX_HEAD_DIMS`]; the memory used is bounded
    /// by that limit, never by the ranges written.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("bad --dims {s:?}: {why}; expected L.H=0-7,12");
        let (head, dims) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (layer, head) = head
            .split_once('.')
            .ok_or_else(|| bad("no '.' between layer and head"))?;
        let layer_idx = layer
            .trim()
            .parse()
            .map_err(|_| bad("layer is not an index"))?;
        let head_idx = head
            .trim()
            .parse()
            .map_err(|_| bad("head is not an index"))?;
        let too_big = || bad(&format!("dimension indices must be below {MAX_HEAD_DIMS}"));
        let mut keep = vec![false; MAX_HEAD_DIMS];
        for piece in dims.split(',') {
            let piece = piece.trim();
            let (a, b) = match piece.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a
                        .trim()
                        .parse()
                        .map_err(|_| bad("range start is not an index"))?;
                    let b: usize = b
                        .trim()
                        .parse()
                        .map_err(|_| bad("range end is not an index"))?;
                    if b < a {
                        return Err(bad("range end before start"));
                    }
                    (a, b)
                }
                None => {
                    let a = piece.parse().map_err(|_| bad("not a dimension index"))?;
                    (a, a)
                }
            };
            if b >= MAX_HEAD_DIMS {
                return Err(too_big());
            }
            keep[a..=b].fill(true);
        }
        let dims = keep
            .iter()
            .enumerate()
            .filter_map(|(i, &k)| k.then_some(i))
            .collect();
        Ok(Self {
            layer_idx,
            head_idx,
            dims,
        })
    }
}

/// A classic attention mistake the engine can make on purpose, for teaching (issue 11): the
/// tutorial in DESIGN.md makes several of them. Each is applied to every layer and head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mistake {
    /// Scores are not divided by √d_head (the scale is 1, whatever `--scale` says).
    NoScaling,
    /// The model's positional encoding is skipped: added sinusoidal or learned embeddings,
    /// RoPE's rotation and ALiBi's bias.
    NoPositions,
    /// The causal mask a causal model adds by construction is dropped (a `causal` the user
    /// wrote in the mask spec stays).
    NoCausalMask,
    /// The softmax runs over the query axis: each key's column sums to 1, not each query's row.
    #[serde(rename = "wrong-axis")]
    SoftmaxWrongAxis,
    /// The weights multiply V elementwise instead of as a matrix product. The tutorial's
    /// `attention_weights * value` ([n, n] times [n, d]) only broadcasts when n = d, and then
    /// output[i][c] = w[i][c] · v[i][c] reads token i's own value row only. The shape-valid form
    /// used here keeps exactly that property: output_i = w_ii · v_i, each query keeps its own
    /// value scaled by the weight on itself, and no information moves between tokens.
    ElementwiseValues,
    /// Every norm is skipped: the blocks' norms, the final norm and BERT's embedding norm.
    #[serde(rename = "no-layernorm")]
    NoLayerNorm,
    /// Block-local attention in chunks of 2^heads tokens, the tutorial's "hierarchical"
    /// snippet (`range(0, n, 2 ** num_heads)`), instead of a chunk size chosen for the input.
    ChunkByHeads,
}

impl Mistake {
    /// Every mistake, in menu order.
    pub const ALL: [Mistake; 7] = [
        Mistake::NoScaling,
        Mistake::NoPositions,
        Mistake::NoCausalMask,
        Mistake::SoftmaxWrongAxis,
        Mistake::ElementwiseValues,
        Mistake::NoLayerNorm,
        Mistake::ChunkByHeads,
    ];

    /// The command-line name (`--mistake NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mistake::NoScaling => "no-scaling",
            Mistake::NoPositions => "no-positions",
            Mistake::NoCausalMask => "no-causal-mask",
            Mistake::SoftmaxWrongAxis => "wrong-axis",
            Mistake::ElementwiseValues => "elementwise-values",
            Mistake::NoLayerNorm => "no-layernorm",
            Mistake::ChunkByHeads => "chunk-by-heads",
        }
    }

    /// The lesson, in one sentence.
    pub fn lesson(self) -> &'static str {
        match self {
            Mistake::NoScaling => {
                "Without dividing by √d_head, dot products grow with the head width, the \
                 softmax saturates and each row collapses onto one key."
            }
            Mistake::NoPositions => {
                "Without positional information attention only sees a bag of tokens: shuffle \
                 the input and the maps shuffle with it, nothing else changes."
            }
            Mistake::NoCausalMask => {
                "Without the causal mask a language model reads the future: the cells above \
                 the diagonal fill with attention it must never have."
            }
            Mistake::SoftmaxWrongAxis => {
                "Softmax over the wrong axis makes each key's column sum to 1, so a query's \
                 weights are no longer a distribution over what it can read."
            }
            Mistake::ElementwiseValues => {
                "Multiplying the weights and V elementwise instead of as a matrix product means \
                 no token reads any other token's value: attention mixes nothing."
            }
            Mistake::NoLayerNorm => {
                "Without normalisation every layer adds to the residual stream unchecked and \
                 the activations grow from layer to layer."
            }
            Mistake::ChunkByHeads => {
                "Chunking by 2^heads ties the block size to the number of heads, not to the \
                 text: 8 heads give 256-token blocks, 12 give 4096, and short inputs are not \
                 chunked at all."
            }
        }
    }
}

impl std::fmt::Display for Mistake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mistake {
    type Err = String;

    /// Reads one of the names of [`Mistake::name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Mistake::ALL
            .into_iter()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Mistake::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown mistake {wanted:?}; expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// Everything a forward pass needs besides the tokens and the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Which (query, key) pairs may attend.
    pub mask: MaskSpec,
    /// How scores are scaled.
    pub scale: ScoreScale,
    /// Heads whose output z_h is zeroed or replaced by its mean over positions, in
    /// [`Ablation::normalized`] order. Their maps are still recorded.
    pub ablations: Vec<Ablation>,
    /// Per-head subsets of query/key dimensions.
    pub dims: Vec<DimSubset>,
    /// Record a full [`super::Trace`] of this layer.
    pub trace_layer: Option<usize>,
    /// Keep the final hidden states in the run.
    pub keep_hidden: bool,
    /// Threads for the per-head work: `None` picks by sequence length (see the engine docs),
    /// `Some(1)` forces one. Results are identical either way.
    pub threads: Option<usize>,
    /// Keep every layer's and head's probabilities (the default). When false the run's maps
    /// are empty (zero layers) and no layers × heads × tokens² memory is held: each head's
    /// scores live one block of query rows at a time (`attnviz next` needs only the hidden
    /// states).
    pub keep_maps: bool,
    /// Mistakes to make on purpose (teaching); empty for a correct run.
    pub mistakes: Vec<Mistake>,
    /// Record the mean L2 norm of the residual stream's rows after every block
    /// ([`super::AttentionRun::layer_norms`]).
    pub keep_layer_norms: bool,
    /// Keep every block's input (`Resid(l)`) in the pipeline's run, so that a later run that
    /// changes only layer l on can resume there (the app's live ablations).
    pub keep_residuals: bool,
}

impl RunOptions {
    /// True when `mistake` is switched on.
    pub fn has(&self, mistake: Mistake) -> bool {
        self.mistakes.contains(&mistake)
    }

    /// The factor that multiplies q·k for a head of width `d_head`: the score scale's, or 1
    /// under [`Mistake::NoScaling`].
    pub fn scale_factor(&self, d_head: usize) -> f32 {
        if self.has(Mistake::NoScaling) {
            1.0
        } else {
            self.scale.factor(d_head)
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            mask: MaskSpec::default(),
            scale: ScoreScale::default(),
            ablations: Vec::new(),
            dims: Vec::new(),
            trace_layer: None,
            keep_hidden: false,
            threads: None,
            keep_maps: true,
            mistakes: Vec::new(),
            keep_layer_norms: false,
            keep_residuals: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_subsets_print_as_dims_reads_them_and_options_title_only_what_differs() {
        for spec in ["0.3=0-7,12", "2.0=5", "1.1=0-2,4-6,9"] {
            let d: DimSubset = spec.parse().unwrap();
            assert_eq!(d.to_string(), spec);
        }
        // Unsorted and repeated dimensions print as their runs.
        let d = DimSubset {
            layer_idx: 0,
            head_idx: 1,
            dims: vec![3, 1, 2, 2, 7],
        };
        assert_eq!(d.to_string(), "0.1=1-3,7");
        let default = OptionsRecord::of(&RunOptions::default());
        assert_eq!(default.title(), "");
        let options = RunOptions {
            scale: ScoreScale::None,
            dims: vec![d],
            mistakes: vec![Mistake::NoScaling, Mistake::NoPositions],
            ..RunOptions::default()
        };
        assert_eq!(
            OptionsRecord::of(&options).title(),
            " · scale none · dims 0.1=1-3,7 · mistakes no-scaling, no-positions"
        );
    }

    #[test]
    fn scale_factors() {
        // d_head 16: 1/√16 = 0.25; temperature 2 halves it again.
        assert_eq!(ScoreScale::InvSqrtDHead.factor(16), 0.25);
        assert_eq!(ScoreScale::None.factor(16), 1.0);
        assert_eq!(
            "temperature:2".parse::<ScoreScale>().unwrap().factor(16),
            0.125
        );
        assert!("temperature:0".parse::<ScoreScale>().is_err());
        assert!("temperature:nan".parse::<ScoreScale>().is_err());
        // Issue 10 item 6: 1e-45 made every row all zeros. The bounds themselves are accepted.
        for bad in [
            "temperature:1e-45",
            "temperature:0.000999",
            "temperature:1001",
            "temperature:inf",
        ] {
            assert!(bad.parse::<ScoreScale>().is_err(), "{bad}");
        }
        for good in ["temperature:0.001", "temperature:1000"] {
            assert!(good.parse::<ScoreScale>().is_ok(), "{good}");
        }
    }

    #[test]
    fn mistake_names_round_trip() {
        for m in Mistake::ALL {
            assert_eq!(m.name().parse::<Mistake>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
            // serde spells them as the CLI does (sessions and lessons store them).
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
            assert!(m.lesson().ends_with('.'));
        }
        assert!("no-scale".parse::<Mistake>().is_err());
        let opts = RunOptions {
            mistakes: vec![Mistake::NoScaling],
            ..RunOptions::default()
        };
        // d_head 64: 1/√64 = 0.125 normally, 1 without scaling.
        assert_eq!(RunOptions::default().scale_factor(64), 0.125);
        assert_eq!(opts.scale_factor(64), 1.0);
    }

    #[test]
    fn dims_parse() {
        let d: DimSubset = "2.3=0-2,7,1".parse().unwrap();
        assert_eq!((d.layer_idx, d.head_idx, d.dims), (2, 3, vec![0, 1, 2, 7]));
        assert!("2.3".parse::<DimSubset>().is_err());
        assert!("2=1".parse::<DimSubset>().is_err());
        assert!("0.0=5-1".parse::<DimSubset>().is_err());
        // Issue 10 item 1: these allocated 80 GB and 3 GB; now refused by the index bound.
        for huge in [
            "0.0=0-9999999999",
            "0.0=0-400000000",
            "0.0=65536",
            "0.0=18446744073709551615",
        ] {
            let err = huge.parse::<DimSubset>().unwrap_err();
            assert!(err.contains("below 65536") || err.contains("not"), "{err}");
        }
        // The largest range allowed, written many times, still yields each index once.
        let d: DimSubset = "0.0=0-65535,0-65535,0-65535".parse().unwrap();
        assert_eq!(d.dims.len(), 65536);
    }
}

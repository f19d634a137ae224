//! What a forward pass is asked to do: the mask, the score scale, ablations, dimension subsets
//! and how much to capture.

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

/// Everything a forward pass needs besides the tokens and the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Which (query, key) pairs may attend.
    pub mask: MaskSpec,
    /// How scores are scaled.
    pub scale: ScoreScale,
    /// Heads whose output is zeroed, as (layer_idx, head_idx). Their maps are still recorded.
    pub ablated_heads: Vec<(usize, usize)>,
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
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            mask: MaskSpec::default(),
            scale: ScoreScale::default(),
            ablated_heads: Vec::new(),
            dims: Vec::new(),
            trace_layer: None,
            keep_hidden: false,
            threads: None,
            keep_maps: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The layers inside a block apart from attention: norms and where they sit, the MLP and its
//! nonlinearity, and the row-parallel linear map with its residual epilogue.

use super::gemm::PackedMatrix;
use super::parallel::{Split, par_fresh, par_rows, split_columns};
use super::simd;
use ndarray::{Array1, Array2, ArrayViewMut2, Axis, s};

pub use super::math::Activation;

/// A normalisation layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Norm {
    /// LayerNorm with a learned scale and shift.
    LayerNorm {
        /// Scale. Shape: [d_model].
        gamma: Array1<f32>,
        /// Shift. Shape: [d_model].
        beta: Array1<f32>,
        /// Added to the variance.
        eps: f32,
    },
    /// RMSNorm with a learned scale.
    RmsNorm {
        /// Scale. Shape: [d_model].
        gamma: Array1<f32>,
        /// Added to the mean square.
        eps: f32,
    },
}

impl Norm {
    /// A LayerNorm with gamma 1 and beta 0.
    pub fn identity_layer_norm(d_model: usize, eps: f32) -> Self {
        Norm::LayerNorm {
            gamma: Array1::ones(d_model),
            beta: Array1::zeros(d_model),
            eps,
        }
    }

    /// Normalises every row of `x` in place. Shape of `x`: [token, d_model].
    pub fn apply(&self, x: &mut Array2<f32>) {
        self.apply_rows(x.view_mut());
    }

    /// [`Self::apply`] on a view (a block of rows).
    pub fn apply_rows(&self, mut x: ArrayViewMut2<'_, f32>) {
        for mut row in x.axis_iter_mut(Axis(0)) {
            let Some(row) = row.as_slice_mut() else {
                continue;
            };
            match self {
                Norm::LayerNorm { gamma, beta, eps } => {
                    if let (Some(g), Some(b)) = (gamma.as_slice(), beta.as_slice()) {
                        simd::layer_norm_row(row, g, b, *eps);
                    }
                }
                Norm::RmsNorm { gamma, eps } => {
                    if let Some(g) = gamma.as_slice() {
                        simd::rms_norm_row(row, g, *eps);
                    }
                }
            }
        }
    }

    /// The width the norm expects (its scale's length).
    pub fn width(&self) -> usize {
        match self {
            Norm::LayerNorm { gamma, .. } | Norm::RmsNorm { gamma, .. } => gamma.len(),
        }
    }
}

/// Where the norms sit in each block.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NormPlacement {
    /// x + f(norm(x)), as in GPT-2 and Llama.
    #[default]
    Pre,
    /// norm(x + f(x)), as in BERT and the original Transformer.
    Post,
    /// x + f(x): no normalisation at all.
    None,
}

impl NormPlacement {
    /// All placements, for pickers.
    pub const ALL: [NormPlacement; 3] =
        [NormPlacement::Pre, NormPlacement::Post, NormPlacement::None];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NormPlacement::Pre => "pre",
            NormPlacement::Post => "post",
            NormPlacement::None => "none",
        }
    }
}

impl std::str::FromStr for NormPlacement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pre" => Ok(Self::Pre),
            "post" => Ok(Self::Post),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown LayerNorm placement {other:?}; expected pre, post or none"
            )),
        }
    }
}

/// The feed-forward block.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Shape: [d_model, d_ff].
    pub w_in: Array2<f32>,
    /// Shape: [d_ff].
    pub b_in: Option<Array1<f32>>,
    /// For gated MLPs: the activation applies to x·w_gate and multiplies x·w_in. Shape: [d_model, d_ff].
    pub w_gate: Option<Array2<f32>>,
    /// Shape: [d_ff, d_model].
    pub w_out: Array2<f32>,
    /// Shape: [d_model].
    pub b_out: Option<Array1<f32>>,
    /// The nonlinearity.
    pub activation: Activation,
}

impl Mlp {
    /// Shape of `x` and the result: [token, d_model]. Row blocks run on `threads` threads.
    pub(super) fn forward(
        &self,
        x: &Array2<f32>,
        packed: &PackedMlp,
        epilogue: Epilogue<'_>,
        threads: usize,
    ) -> Array2<f32> {
        // Few rows: the hidden activations by columns, each thread reading its own part of
        // w_in (and w_gate); the product with w_out by rows as below, since the epilogue
        // needs whole rows. (Measured on Zen 3, MiniLM at 32 tokens, one process alternating
        // call by call: w_out by columns too, then the epilogue, was 1.5 % slower.)
        if split_columns(x.nrows(), threads) {
            let hidden = self.hidden_by_columns(x, packed, threads);
            return linear(
                &hidden,
                &packed.w_out,
                self.b_out.as_ref(),
                epilogue,
                threads,
            );
        }
        par_fresh(
            Split::Rows,
            x.nrows(),
            self.w_out.ncols(),
            threads,
            &|row0, block| {
                let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
                // Scratch kept per pool thread: fresh megabyte arrays on every call cost page faults.
                let (mut hidden_buf, mut gate_buf) = MLP_SCRATCH.take();
                let size = rows.nrows() * self.w_in.ncols();
                if hidden_buf.len() < size {
                    hidden_buf.resize(size, 0.0);
                }
                let h = &mut hidden_buf[..size];
                let mut hidden = scratch_view(h, rows.nrows(), self.w_in.ncols());
                simd::matmul(rows, &packed.w_in, hidden.view_mut(), false);
                if let Some(b) = &self.b_in {
                    hidden += b;
                }
                match &packed.w_gate {
                    Some(w_gate) => {
                        if gate_buf.len() < size {
                            gate_buf.resize(size, 0.0);
                        }
                        let g = &mut gate_buf[..size];
                        simd::matmul(
                            rows,
                            w_gate,
                            scratch_view(g, rows.nrows(), self.w_in.ncols()),
                            false,
                        );
                        simd::activate_gated(
                            &mut hidden_buf[..size],
                            &gate_buf[..size],
                            self.activation,
                        );
                    }
                    None => simd::activate(&mut hidden_buf[..size], self.activation),
                }
                let hidden = scratch_view(&mut hidden_buf, rows.nrows(), self.w_in.ncols());
                let mut block = block.product(hidden.view(), &packed.w_out);
                if let Some(b) = &self.b_out {
                    block += b;
                }
                epilogue.apply(row0, block);
                MLP_SCRATCH.set((hidden_buf, gate_buf));
            },
        )
    }

    /// The hidden activations `act(x · w_in + b_in)` (gated: times `act(x · w_gate)`) in
    /// column blocks on `threads` threads ([`par_fresh`] by columns), for inputs with few rows.
    /// Each value goes through the same operations as in [`Self::forward`]'s row blocks.
    fn hidden_by_columns(
        &self,
        x: &Array2<f32>,
        packed: &PackedMlp,
        threads: usize,
    ) -> Array2<f32> {
        par_fresh(
            Split::Columns,
            x.nrows(),
            self.w_in.ncols(),
            threads,
            &|col0, block| {
                let mut block = block.product_of_columns(x.view(), &packed.w_in, col0);
                let cols = col0..col0 + block.ncols();
                if let Some(b) = &self.b_in {
                    block += &b.slice(s![cols.clone()]);
                }
                match &packed.w_gate {
                    Some(w_gate) => {
                        let (hidden_buf, mut gate_buf) = MLP_SCRATCH.take();
                        let size = block.len();
                        if gate_buf.len() < size {
                            gate_buf.resize(size, 0.0);
                        }
                        let mut gate = scratch_view(&mut gate_buf, x.nrows(), cols.len());
                        simd::matmul(
                            x.view(),
                            w_gate.columns(col0, cols.len()),
                            gate.view_mut(),
                            false,
                        );
                        for (mut hidden, gate) in block.rows_mut().into_iter().zip(gate.rows()) {
                            if let (Some(hidden), Some(gate)) =
                                (hidden.as_slice_mut(), gate.to_slice())
                            {
                                simd::activate_gated(hidden, gate, self.activation);
                            }
                        }
                        MLP_SCRATCH.set((hidden_buf, gate_buf));
                    }
                    None => {
                        for mut hidden in block.rows_mut() {
                            if let Some(hidden) = hidden.as_slice_mut() {
                                simd::activate(hidden, self.activation);
                            }
                        }
                    }
                }
            },
        )
    }
}

thread_local! {
    /// The MLP's hidden and gate activations, reused between calls on the same thread.
    static MLP_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The first `rows · cols` values as a `[rows, cols]` matrix.
fn scratch_view(values: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut values[..rows * cols])
        .unwrap_or_else(|_| unreachable!("the length is rows · cols"))
}

/// What a sublayer does to its output rows before returning them: add the residual stream,
/// then (post-LN) normalise. Done inside the row blocks, so it runs in parallel.
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'a> {
    /// The residual stream, shape [token, d_model]; `None` returns the sublayer's own output
    /// (when an intervention reads or replaces it before the add).
    pub(super) residual: Option<&'a Array2<f32>>,
    /// A norm applied after the residual add (post-LN models).
    pub(super) norm: Option<&'a Norm>,
}

impl Epilogue<'_> {
    /// Nothing: the sublayer's output as it is.
    pub(super) const NONE: Epilogue<'static> = Epilogue {
        residual: None,
        norm: None,
    };

    pub(super) fn apply(&self, row0: usize, mut block: ArrayViewMut2<'_, f32>) {
        if let Some(residual) = self.residual {
            block += &residual.slice(s![row0..row0 + block.nrows(), ..]);
        }
        if let Some(norm) = self.norm {
            norm.apply_rows(block);
        }
    }
}

/// x · w + b, then the epilogue, with row blocks of x on `threads` threads.
/// Shapes: x [rows, in], w [in, out].
pub(super) fn linear(
    x: &Array2<f32>,
    w: &PackedMatrix,
    b: Option<&Array1<f32>>,
    epilogue: Epilogue<'_>,
    threads: usize,
) -> Array2<f32> {
    par_fresh(Split::Rows, x.nrows(), w.cols(), threads, &|row0, block| {
        let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
        let mut block = block.product(rows, w);
        if let Some(b) = b {
            block += b;
        }
        epilogue.apply(row0, block);
    })
}

/// A copy of `x` with every row normalised, in row blocks on `threads` threads.
pub(super) fn normalized(x: &Array2<f32>, norm: &Norm, threads: usize) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(x.raw_dim());
    par_rows(&mut out, threads, &|row0, mut block| {
        let rows = block.nrows();
        block.assign(&x.slice(s![row0..row0 + rows, ..]));
        norm.apply_rows(block);
    });
    out
}

/// An MLP's weight matrices, packed for the matrix kernel.
pub(super) struct PackedMlp {
    pub(super) w_in: PackedMatrix,
    pub(super) w_gate: Option<PackedMatrix>,
    pub(super) w_out: PackedMatrix,
}

impl PackedMlp {
    pub(super) fn new(mlp: &Mlp) -> Self {
        Self {
            w_in: PackedMatrix::pack(mlp.w_in.view()),
            w_gate: mlp.w_gate.as_ref().map(|w| PackedMatrix::pack(w.view())),
            w_out: PackedMatrix::pack(mlp.w_out.view()),
        }
    }
}

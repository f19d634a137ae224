//! How much memory a run may take and needs: the default budget (from the machine's memory
//! and the process's address-space limit), the estimate of a run's peak from the model's
//! shape and the options, and the check that refuses a run over its input's budget.

use super::{PipelineError, RunInput};
use crate::engine::RunOptions;
use crate::model::{LoadedModel, ModelInfo};

/// The budget used when fallback is needed: physical memory unknown.
const FALLBACK_BUDGET: u64 = 4 << 30;
/// The largest default budget.
const MAX_DEFAULT_BUDGET: u64 = 8 << 30;

/// The default memory budget of a run: the smaller of 8 GiB and half the physical memory
/// (`MemTotal` in /proc/meminfo), or 4 GiB where that cannot be read; and at most half the
/// process's address-space limit (`ulimit -v`, from /proc/self/limits) when one is set.
pub fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let budget = total.map_or(FALLBACK_BUDGET, |t| (t / 2).min(MAX_DEFAULT_BUDGET));
    let address_space = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| address_space_limit(&text));
    address_space.map_or(budget, |limit| budget.min(limit / 2))
}

/// The soft "Max address space" of a /proc/self/limits text, in bytes; `None` when unlimited.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The shape of a run's maps, [layers, query heads, len, len]: what the engine returns with
/// `keep_maps`, known before it runs (the memory estimate and the export's early size check).
pub(crate) fn maps_shape(info: &ModelInfo, len: usize) -> [usize; 4] {
    [info.layers, info.heads, len, len]
}

/// The estimated peak memory, in bytes, of running a model shaped `info` on `len` tokens with
/// `opts` (the weights, already loaded, are not counted):
/// - the maps, layers × heads × len² × 4, when `keep_maps`;
/// - without them, per head in flight (up to the engine's threads) one block of 48 query rows
///   of scores, len × 48 × 4;
/// - a traced layer: four [len, len] matrices per head (raw, masked, probabilities, a copy);
/// - activations: the residual stream three times, q/k/v, the heads' concatenation and their
///   per-head copies, and the MLP's two hidden [len, d_ff] arrays, 4 bytes each;
/// - the mask, len² booleans;
/// - with `keep_residuals`, every block's input: layers × len × d_model × 4;
/// - with `keep_hidden` and an LM head, the log-probabilities `next` computes: len × vocab,
///   at most 2²⁸ values at once.
pub fn estimate_run_bytes(info: &ModelInfo, len: usize, opts: &RunOptions) -> u64 {
    let n = len as u64;
    let (l, h, kv) = (info.layers as u64, info.heads as u64, info.kv_heads as u64);
    let (d, dh, ff) = (info.d_model as u64, info.d_head as u64, info.d_ff as u64);
    let sq = n.saturating_mul(n);
    let mut bytes = 0u64;
    if opts.keep_maps {
        let values = maps_shape(info, len)
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64));
        bytes = bytes.saturating_add(values.saturating_mul(4));
    } else {
        // The engine runs at most 8 heads at once.
        let in_flight = h.min(8);
        bytes = bytes.saturating_add(in_flight.saturating_mul(n).saturating_mul(48 * 4));
    }
    if opts.trace_layer.is_some() {
        bytes = bytes.saturating_add(h.saturating_mul(sq).saturating_mul(4 * 4));
    }
    let widths = 3 * d + (h + 2 * kv) * dh + 2 * h * dh + 3 * dh * h.min(8) + 2 * ff;
    bytes = bytes.saturating_add(n.saturating_mul(widths).saturating_mul(4));
    bytes = bytes.saturating_add(sq);
    if opts.keep_residuals {
        // Every block's input, [len, d_model] each.
        bytes = bytes.saturating_add(l.saturating_mul(n).saturating_mul(d).saturating_mul(4));
    }
    if opts.keep_hidden
        && let Some(head) = &info.lm_head
    {
        let values = n.saturating_mul(head.vocab as u64).min(1 << 28);
        bytes = bytes.saturating_add(values.saturating_mul(4));
    }
    bytes
}

/// Refuses a run of `len` tokens under `opts` that would need more than the input's memory
/// budget; `factor` counts runs held at once (a backward pass keeps about three forwards).
pub(super) fn check_budget(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    len: usize,
    factor: u64,
) -> Result<(), PipelineError> {
    check_budget_plus(model, input, opts, len, factor, 0).map(|_| ())
}

/// [`check_budget`] with `extra` bytes the run also needs (the backward's weight copies).
pub(super) fn check_budget_plus(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    len: usize,
    factor: u64,
    extra: u64,
) -> Result<u64, PipelineError> {
    let needs = estimate_run_bytes(&model.info(), len, opts)
        .saturating_mul(factor)
        .saturating_add(extra);
    if needs > input.memory_budget {
        return Err(PipelineError::OverBudget {
            needs,
            tokens: len,
            budget: input.memory_budget,
            file: input.file.clone(),
        });
    }
    Ok(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_half_the_memory_at_most_8_gib() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24000000 kB\nMemFree: 1 kB\n"),
            Some(24_000_000 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         2147483648           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(2 << 30));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
        let budget = default_memory_budget();
        assert!(budget <= 8 << 30 && budget > 0, "{budget}");
    }
}

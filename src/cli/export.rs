//! `attnviz export`: every layer's and head's attention as JSON or NPY.

use super::args::{ExportArgs, ExportFormat};
use super::{Timings, compute, ms_since, print_timings};
use crate::pipeline::{self, TensorFormat};
use anyhow::Result;
use std::time::Instant;

/// Runs `attnviz export`.
pub(super) fn export(args: ExportArgs) -> Result<()> {
    let mut timings = Timings::default();
    let (run, _) = compute(&args.common, &mut timings, false)?;
    let start = Instant::now();
    let format = match args.format {
        Some(ExportFormat::Json) => TensorFormat::Json,
        Some(ExportFormat::Npy) => TensorFormat::Npy,
        None => TensorFormat::from_path(&args.out),
    };
    let max_output = args
        .max_output
        .map_or(pipeline::DEFAULT_MAX_OUTPUT, |b| b.0);
    pipeline::write_tensors(&run, &args.out, format, max_output).map_err(super::worded)?;
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

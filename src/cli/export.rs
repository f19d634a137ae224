//! `attnviz export`: every layer's and head's attention as JSON or NPY.

use super::args::{ExportArgs, ExportFormat};
use super::{Timings, compute, ms_since, print_timings};
use crate::io::OutputFormat;
use crate::pipeline::{self, TensorFormat};
use anyhow::{Result, anyhow};
use std::time::Instant;

/// Runs `attnviz export`.
pub(super) fn export(args: ExportArgs) -> Result<()> {
    // --format decides when given; else the extension, .json or .npy (anything else is refused
    // before any work, rather than written as JSON under another name).
    let format = match args.format {
        Some(ExportFormat::Json) => TensorFormat::Json,
        Some(ExportFormat::Npy) => TensorFormat::Npy,
        None => match OutputFormat::of(&args.out, &[OutputFormat::Json, OutputFormat::Npy])
            .map_err(|e| anyhow!(e))?
        {
            OutputFormat::Npy => TensorFormat::Npy,
            _ => TensorFormat::Json,
        },
    };
    let mut timings = Timings::default();
    let max_output = args
        .max_output
        .map_or(pipeline::DEFAULT_MAX_OUTPUT, |b| b.0);
    // A file that cannot fit is refused before the forward pass, not after it.
    let ahead = |model: &_, input: &_, opts: &_| {
        pipeline::check_output_ahead(model, input, opts, format, max_output, &args.out)
    };
    let (run, _) = compute(&args.common, &mut timings, false, args.warm_runs, &ahead)?;
    let start = Instant::now();
    pipeline::write_tensors(&run, &args.out, format, max_output).map_err(super::worded)?;
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

//! `attnviz export`: every layer's and head's attention as JSON or NPY.

use super::args::{ExportArgs, ExportFormat};
use super::{Timings, compute, ms_since, print_timings};
use crate::io;
use anyhow::Result;
use std::time::Instant;

/// Runs `attnviz export`.
pub(super) fn export(args: ExportArgs) -> Result<()> {
    let mut timings = Timings::default();
    let computed = compute(&args.common, &mut timings, false)?;
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

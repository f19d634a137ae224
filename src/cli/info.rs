//! `attnviz info`: the model's architecture, as text or JSON.

use super::args::InfoArgs;
use crate::model::LoadedModel;
use crate::model::ModelInfo;
use crate::pipeline;
use anyhow::{Context as _, Result};

/// Runs `attnviz info`.
pub(super) fn info(args: InfoArgs) -> Result<()> {
    // The demo is built within the default memory budget: `info` on a demo too large for this
    // machine says so instead of aborting.
    let model = LoadedModel::load(
        &args.model,
        args.demo.config(),
        args.demo.tokenizer,
        pipeline::default_memory_budget(),
    )?;
    let info = model.model().info();
    if args.json {
        let mut value = serde_json::to_value(&info).context("serialising model info")?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("targets".into(), serde_json::json!(target_names(&model)));
        }
        let json = serde_json::to_string_pretty(&value).context("serialising model info")?;
        super::print_stdout(&format!("{json}\n"))?;
    } else {
        super::print_stdout(&info_text(&info, &model))?;
    }
    Ok(())
}

fn info_text(info: &ModelInfo, model: &LoadedModel) -> String {
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
    if model.as_checkpoint().is_some() {
        s.push_str(&format!(
            "lm head       {}\n",
            lm_head_text(info.lm_head.as_ref())
        ));
    }
    s.push_str(&format!(
        "targets       {} (attnviz attribute --target)\n",
        target_names(model).join(", ")
    ));
    let mut crafted = Vec::new();
    if let Some(demo) = model.as_demo() {
        for l in 0..info.layers {
            for h in 0..info.heads {
                if let Some(kind) = demo.crafted_head(l, h) {
                    crafted.push(format!("L{l}·H{h} {}", kind.label()));
                }
            }
        }
    } else if info.kv_heads < info.heads {
        s.push_str(&format!(
            "kv groups     {}\n",
            pipeline::kv_groups_text(&info.kv_groups())
        ));
    }
    if !crafted.is_empty() {
        s.push_str(&format!("crafted heads {}\n", crafted.join(", ")));
    }
    s
}

/// The attribution targets the model supports, in order.
fn target_names(model: &LoadedModel) -> Vec<&'static str> {
    pipeline::supported_targets(model)
        .into_iter()
        .map(|k| k.name())
        .collect()
}

/// The LM head in words.
pub(super) fn lm_head_text(head: Option<&crate::model::LmHeadInfo>) -> String {
    match head {
        None => "none".to_owned(),
        Some(h) if h.tied => format!("tied to {} (vocab {})", h.tensor, h.vocab),
        Some(h) => format!("untied, {} (vocab {})", h.tensor, h.vocab),
    }
}

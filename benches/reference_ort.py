"""Reference timings: ONNX Runtime on the CPU, every attention map as an output (issue 26).

Exports all-MiniLM-L6-v2 once to ONNX with the attentions as outputs (torch.onnx; needs torch,
transformers, onnx and onnxscript), then times the forward pass with ONNX Runtime on the same
ids as `benches/engine.rs` (`forward_minilm/N`: 101, (i*31+7) % 1000 + 1000, 102): intra-op 2
threads, inter-op 1, every graph optimisation, two warm-up runs, median of `--runs`. Run it in a
venv outside the repository:

    python benches/reference_ort.py --model DIR --onnx /tmp/minilm_attn.onnx --tokens 32 128 512

and interleave it with `cargo bench --bench engine -- forward_minilm` (see the README's table).
Prints one JSON line per length: {"tokens", "median_ms", "runs_ms"}.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np


def export(model_dir, path):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").float().eval()
    model.config.output_attentions = True
    layers = model.config.num_hidden_layers
    ids = torch.tensor([[101] + [1000 + i for i in range(14)] + [102]])
    mask = torch.ones_like(ids)
    names = ["last_hidden_state", "pooler_output"] + [f"attention_{i}" for i in range(layers)]
    axes = {"input_ids": {1: "tokens"}, "attention_mask": {1: "tokens"},
            "last_hidden_state": {1: "tokens"}}
    axes.update({f"attention_{i}": {2: "tokens", 3: "tokens"} for i in range(layers)})

    class WithAttentions(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                             output_attentions=True, return_dict=True)
            return (out.last_hidden_state, out.pooler_output, *out.attentions)

    torch.onnx.export(WithAttentions(model), (ids, mask), path, input_names=["input_ids", "attention_mask"],
                      output_names=names, dynamic_axes=axes, opset_version=17, dynamo=False)


def session(path, threads=2):
    """An ONNX Runtime session on the CPU as the benchmarks compare it: intra-op 2 threads
    (`threads`), inter-op 1, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(n):
    """The inputs of `forward_minilm/n`: ids 101, (i*31+7) % 1000 + 1000, 102, all attended."""
    ids = np.array([[101] + [(i * 31 + 7) % 1000 + 1000 for i in range(n - 2)] + [102]], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def timed_runs(ort_session, n, runs):
    """Milliseconds of `runs` forwards of `forward_minilm/n`'s inputs, each checked to return
    every attention map."""
    inputs = feeds(n)
    ms = []
    for _ in range(runs):
        start = time.perf_counter()
        outputs = ort_session.run(None, inputs)
        ms.append((time.perf_counter() - start) * 1e3)
        assert outputs[2].shape == (1, 12, n, n), outputs[2].shape
    return ms


def arguments(extra):
    """The command line every ONNX Runtime comparison takes (`--model`, `--onnx`, `--tokens`),
    with `extra(parser)` adding its own; exports the model first if `--onnx` is missing."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the MiniLM checkpoint folder")
    parser.add_argument("--onnx", required=True, help="the exported model (written if missing)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 128, 512])
    extra(parser)
    args = parser.parse_args()
    if not os.path.exists(args.onnx):
        export(args.model, args.onnx)
    return args


def main():
    args = arguments(lambda parser: parser.add_argument("--runs", type=int, default=20))
    ort_session = session(args.onnx)
    for n in args.tokens:
        runs = timed_runs(ort_session, n, args.runs + 2)[2:]
        print(json.dumps({"tokens": n, "median_ms": round(statistics.median(runs), 3),
                          "runs_ms": [round(r, 3) for r in runs]}), flush=True)


if __name__ == "__main__":
    main()

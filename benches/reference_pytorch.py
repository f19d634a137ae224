"""Reference timings: transformers (eager attention, output_attentions=True) on the CPU.

Times the forward pass of a checkpoint folder on the same text attnviz's benchmarks use: two
threads, no_grad, two warm-up runs, median of five. Run it in a venv outside the repository:

    ~/attnviz-venv/bin/python benches/reference_pytorch.py --model DIR --tokens 128 512

and compare with `attnviz export --model DIR --ids ... --timings` (forward_ms) in the same session.
Prints one JSON line per length: {"tokens", "median_ms", "runs_ms"}.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").float().eval()
    for n in args.tokens:
        # The same ids as `attnviz export --ids`: 101, then (i*31+7) % 1000 + 1000, then 102.
        ids = [101] + [(i * 31 + 7) % 1000 + 1000 for i in range(n - 2)] + [102]
        input_ids = torch.tensor([ids])
        runs = []
        with torch.no_grad():
            for i in range(7):
                start = time.perf_counter()
                model(input_ids=input_ids, output_attentions=True)
                if i >= 2:
                    runs.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"tokens": n, "median_ms": round(statistics.median(runs), 2), "runs_ms": [round(r, 2) for r in runs]}))


if __name__ == "__main__":
    main()

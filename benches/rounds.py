"""Interleaved rounds: attnviz's criterion medians against a Python reference, in one command
(issue 26). Each round runs the criterion benchmarks, then the reference script, and the table
gives each round's ratio (attnviz / reference) and the median of the rounds' ratios.

    python benches/rounds.py --rounds 3 forward   --model-minilm DIR
    python benches/rounds.py --rounds 3 attribution --model-minilm DIR --model-smollm2 DIR
    python benches/rounds.py --rounds 3 first --model-minilm DIR

`forward` compares `forward_minilm/{32,128,512}` with `benches/reference_ort.py` (ONNX Runtime,
every attention map an output); `attribution` compares `gradient_smollm/128`,
`ig32_smollm/128` and `gradient_minilm_similarity/128` with `benches/reference_attribution.py`
(torch autograd); `first` compares the median `forward_ms` of ten fresh
`attnviz export --timings` processes (the first forward in a process, release build) with
`forward_minilm/{32,128,512}` (warm), and also each process's first forward with the median
of five repeats in the same process (`export --warm-runs 5`). Run it with the venv's python (it needs onnxruntime or torch), with nothing
else running. Needs `cargo` on the PATH.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def criterion(bench, filters, env):
    """Runs `cargo bench --bench BENCH -- FILTER…` and returns {benchmark id: median ms}."""
    out = subprocess.run(["cargo", "bench", "--bench", bench, "--", *filters], env=env,
                         capture_output=True, text=True, check=True).stdout
    medians = {}
    name = None
    for line in out.splitlines():
        m = re.match(r"^(\S+/\S+)\s*(time:.*)?$", line.strip())
        if m and not line.startswith(" "):
            name = m.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if t and name:
            medians[name] = float(t.group(1)) * UNITS[t.group(2)]
    return medians


def reference(script, args):
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def first_forwards(model, processes=10, warm_runs=5):
    """{forward_minilm/N: median forward_ms of fresh `attnviz export` processes} at 32, 128, 512,
    and {forward_minilm/N: median over the processes of first / warm in the same process}, where
    warm is the median of `--warm-runs` repeats after the first (`forward_warm_ms`). The paired
    ratio is immune to the host slowing down for seconds at a time, which the comparison with
    a criterion run made minutes apart is not."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    exe = os.path.join(HERE, "..", "target", "release", "attnviz")
    medians, paired = {}, {}
    for tokens in (32, 128, 512):
        ids = ",".join(str(1000 + i) for i in range(tokens))
        times, ratios = [], []
        for _ in range(processes):
            out = subprocess.run([exe, "export", "--model", model, "--ids", ids, "--out",
                                  "/tmp/attnviz_rounds_first.npy", "--timings",
                                  "--warm-runs", str(warm_runs)],
                                 capture_output=True, text=True, check=True)
            line = [l for l in (out.stdout + out.stderr).splitlines() if '"forward_ms"' in l][-1]
            timings = json.loads(line)
            times.append(timings["forward_ms"])
            ratios.append(timings["forward_ms"] / timings["forward_warm_ms"])
        medians[f"forward_minilm/{tokens}"] = statistics.median(times)
        paired[f"forward_minilm/{tokens}"] = statistics.median(ratios)
    return medians, paired


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["forward", "attribution", "first"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-minilm", required=True)
    parser.add_argument("--model-smollm2")
    parser.add_argument("--onnx", default="/tmp/attnviz_minilm_attentions.onnx")
    args = parser.parse_args()
    env = dict(os.environ, ATTNVIZ_MINILM_DIR=args.model_minilm)
    if args.model_smollm2:
        env["ATTNVIZ_SMOLLM2_DIR"] = args.model_smollm2
    rows, paired_rows = {}, {}
    for r in range(args.rounds):
        if args.what == "first":
            # Here "attnviz" is the first forward in a process and "reference" the warm one.
            ours, paired = first_forwards(args.model_minilm)
            ref = criterion("engine", ["forward_minilm/"], env)
            for name, ratio in sorted(paired.items()):
                paired_rows.setdefault(name, []).append(ratio)
                print(f"round {r + 1}: {name}: first / warm in the same process, median over "
                      f"the processes, {ratio:.3f}", flush=True)
        elif args.what == "forward":
            ours = criterion("engine", ["forward_minilm/"], env)
            ref = {f"forward_minilm/{x['tokens']}": x["median_ms"] for x in
                   reference("reference_ort.py", ["--model", args.model_minilm, "--onnx", args.onnx])}
        else:
            ours = criterion("attribution", [], env)
            ref_args = ["--minilm", args.model_minilm]
            if args.model_smollm2:
                ref_args += ["--smollm2", args.model_smollm2]
            ref = {x["name"]: x["median_ms"] for x in reference("reference_attribution.py", ref_args)}
        for name, ms in sorted(ours.items()):
            if name in ref:
                rows.setdefault(name, []).append((ms, ref[name]))
                print(f"round {r + 1}: {name}: attnviz {ms:.2f} ms, reference {ref[name]:.2f} ms, "
                      f"ratio {ms / ref[name]:.3f}", flush=True)
    print("| benchmark | attnviz (ms, per round) | reference (ms, per round) | ratios | median ratio |")
    print("|---|---|---|---|---|")
    for name, pairs in rows.items():
        ratios = [a / b for a, b in pairs]
        print(f"| {name} | {' / '.join(f'{a:.2f}' for a, _ in pairs)} | "
              f"{' / '.join(f'{b:.2f}' for _, b in pairs)} | "
              f"{' / '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f} |")
    if paired_rows:
        print()
        print("| benchmark | first / warm in the same process, per round | median |")
        print("|---|---|---|")
        for name, ratios in paired_rows.items():
            print(f"| {name} | {' / '.join(f'{x:.2f}' for x in ratios)} | "
                  f"{statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()

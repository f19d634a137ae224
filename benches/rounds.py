"""Interleaved rounds: attnviz's criterion medians against a Python reference, in one command
(issue 26). Each round runs the criterion benchmarks, then the reference script, and the table
gives each round's ratio (attnviz / reference) and the median of the rounds' ratios.

    python benches/rounds.py --rounds 3 forward   --model-minilm DIR
    python benches/rounds.py --rounds 3 attribution --model-minilm DIR --model-smollm2 DIR
    python benches/rounds.py --rounds 3 first --model-minilm DIR
    python benches/rounds.py --rounds 3 all --model-minilm DIR --model-smollm2 DIR --onnx FILE

`forward` compares `forward_minilm/{32,128,512}` with `benches/reference_ort.py` (ONNX Runtime,
every attention map an output); `attribution` compares `gradient_smollm/128`,
`ig32_smollm/128` and `gradient_minilm_similarity/128` with `benches/reference_attribution.py`
(torch autograd); `first` compares the median `forward_ms` of ten fresh
`attnviz export --timings` processes (the first forward in a process, release build) with
`forward_minilm/{32,128,512}` (warm), and also each process's first forward with the median
of five repeats in the same process (`export --warm-runs 5`). For each length, five of the
processes run just before that length's criterion benchmark and five just after, so that both
sides of the ratio see the same stretch of host time: on a busy KVM host the same forward takes
15 ms for some seconds and 20 ms for the next. `all` runs `forward`, `first` and `attribution`
one after another in every round: every goal of the issue in one interleaved run. Run it with the venv's python (it needs onnxruntime or torch), with nothing
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


def parse_criterion(out):
    """{benchmark id: criterion's middle estimate in ms} from criterion's standard output."""
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


def criterion(bench, filters, env):
    """Runs `cargo bench --bench BENCH -- FILTER…` and returns {benchmark id: median ms}."""
    out = subprocess.run(["cargo", "bench", "--bench", bench, "--", *filters], env=env,
                         capture_output=True, text=True, check=True).stdout
    return parse_criterion(out)


def reference(script, args):
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def fresh_forwards(exe, model, tokens, processes, warm_runs):
    """forward_ms and forward_ms / forward_warm_ms of `processes` fresh `attnviz export` runs."""
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
    return times, ratios


def first_forwards(model, env, processes=10, warm_runs=5):
    """({forward_minilm/N: median forward_ms of fresh `attnviz export` processes} at 32, 128,
    512, {forward_minilm/N: criterion median}, {forward_minilm/N: median over the processes of
    first / warm in the same process}), where warm is the median of `--warm-runs` repeats after
    the first (`forward_warm_ms`). Half the processes run just before the length's criterion
    benchmark and half just after. The paired ratio is immune to the host slowing down for
    seconds at a time, which the comparison with criterion is only partly."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    exe = os.path.join(HERE, "..", "target", "release", "attnviz")
    medians, warm, paired = {}, {}, {}
    for tokens in (32, 128, 512):
        name = f"forward_minilm/{tokens}"
        before, before_ratios = fresh_forwards(exe, model, tokens, processes // 2, warm_runs)
        warm.update(criterion("engine", [f"^{name}$"], env))
        after, after_ratios = fresh_forwards(exe, model, tokens, processes - processes // 2,
                                             warm_runs)
        medians[name] = statistics.median(before + after)
        paired[name] = statistics.median(before_ratios + after_ratios)
    return medians, warm, paired


def one_round(what, args, env):
    """({benchmark: attnviz ms}, {benchmark: reference ms}, {benchmark: paired ratio}) for one
    round of `what` (not "all")."""
    if what == "first":
        # Here "attnviz" is the first forward in a process and "reference" the warm one.
        return first_forwards(args.model_minilm, env)
    if what == "forward":
        ours = criterion("engine", ["forward_minilm/"], env)
        ref = {f"forward_minilm/{x['tokens']}": x["median_ms"] for x in
               reference("reference_ort.py", ["--model", args.model_minilm, "--onnx", args.onnx])}
        return ours, ref, {}
    ours = criterion("attribution", [], env)
    ref_args = ["--minilm", args.model_minilm]
    if args.model_smollm2:
        ref_args += ["--smollm2", args.model_smollm2]
    ref = {x["name"]: x["median_ms"] for x in reference("reference_attribution.py", ref_args)}
    return ours, ref, {}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["forward", "attribution", "first", "all"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-minilm", required=True)
    parser.add_argument("--model-smollm2")
    parser.add_argument("--onnx", default="/tmp/attnviz_minilm_attentions.onnx")
    args = parser.parse_args()
    env = dict(os.environ, ATTNVIZ_MINILM_DIR=args.model_minilm)
    if args.model_smollm2:
        env["ATTNVIZ_SMOLLM2_DIR"] = args.model_smollm2
    parts = ["forward", "first", "attribution"] if args.what == "all" else [args.what]
    rows, paired_rows = {}, {}
    for r in range(args.rounds):
        for what in parts:
            ours, ref, paired = one_round(what, args, env)
            # In `all`, the forward's rows and the first forward's share benchmark names.
            key = (lambda n: f"{n} (first / warm)") if what == "first" and len(parts) > 1 \
                else (lambda n: n)
            for name, ratio in sorted(paired.items()):
                paired_rows.setdefault(name, []).append(ratio)
                print(f"round {r + 1}: {name}: first / warm in the same process, median over "
                      f"the processes, {ratio:.3f}", flush=True)
            for name, ms in sorted(ours.items()):
                if name in ref:
                    rows.setdefault(key(name), []).append((ms, ref[name]))
                    print(f"round {r + 1}: {key(name)}: attnviz {ms:.2f} ms, reference "
                          f"{ref[name]:.2f} ms, ratio {ms / ref[name]:.3f}", flush=True)
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

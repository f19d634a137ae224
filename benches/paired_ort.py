"""attnviz against ONNX Runtime, alternated call by call in one sitting (issue 26).

`benches/rounds.py` runs a whole criterion benchmark, then the whole reference, round after
round; on the 2-core KVM development machines the host changed speed between the two by up to
±20 % (one round's ratio at 128 tokens was 0.76, the next one's 1.17), so per-round ratios say
more about the host than about the engines. Here both stay loaded and warm for the whole
sitting, ONNX Runtime in this process and attnviz in `examples/forward_server.rs`, and they
take turns a fraction of a second long: each pair is one side's median over `calls` forwards
and then the other's (the order alternating), and the verdict is the median of the per-pair
ratios. The forwards are `forward_minilm/N`'s (same ids, every attention map captured; ONNX
Runtime as `benches/reference_ort.py` sets it up: intra-op 2 threads, inter-op 1, every graph
optimisation). Run in a venv outside the repository:

    python benches/paired_ort.py --model DIR --onnx /tmp/minilm_attn.onnx --pairs 40

Prints a Markdown table and one JSON line per length.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_ort  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A pause before each turn, so that the other side's threads have stopped spinning (ONNX
# Runtime's pool spins for a while after a run; attnviz's team for a millisecond).
SETTLE_S = 0.1


class Attnviz:
    def __init__(self, model, threads):
        self.threads = threads
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "forward_server"],
                       cwd=ROOT, check=True)
        env = dict(os.environ, ATTNVIZ_MINILM_DIR=model)
        self.proc = subprocess.Popen([os.path.join(ROOT, "target", "release", "examples", "forward_server")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def run(self, tokens, calls):
        self.proc.stdin.write(f"{tokens} {calls} {self.threads}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("forward_server stopped")
        return json.loads(line)["ms"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class Ort:
    def __init__(self, onnx, threads):
        self.session = reference_ort.session(onnx, threads)

    def run(self, tokens, calls):
        return reference_ort.timed_runs(self.session, tokens, calls)


def options(parser):
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--turn-ms", type=float, default=400.0,
                        help="about how long one side's turn lasts (whole forwards, at least 3)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of each engine (ONNX Runtime's intra-op threads)")


def main():
    args = reference_ort.arguments(options)
    ours, ort = Attnviz(args.model, args.threads), Ort(args.onnx, args.threads)
    calls = {}
    for n in args.tokens:
        warm = [statistics.median(side.run(n, 5)) for side in (ours, ort)]
        calls[n] = max(3, math.ceil(args.turn_ms / max(warm)))
    rows = {n: [] for n in args.tokens}
    for pair in range(args.pairs):
        for n in args.tokens:
            sides = (ours, ort) if pair % 2 == 0 else (ort, ours)
            medians = {}
            for side in sides:
                time.sleep(SETTLE_S)
                medians[side] = statistics.median(side.run(n, calls[n]))
            rows[n].append((medians[ours], medians[ort]))
    ours.close()

    print("| tokens | calls per turn | attnviz median ms | ONNX Runtime median ms | "
          "attnviz / ORT, median of pairs (quartiles) | attnviz faster |")
    print("|---|---|---|---|---|---|")
    for n, pairs in rows.items():
        ratios = sorted(a / b for a, b in pairs)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        faster = sum(r < 1.0 for r in ratios)
        print(f"| {n} | {calls[n]} | {statistics.median(a for a, _ in pairs):.2f} | "
              f"{statistics.median(b for _, b in pairs):.2f} | {q[1]:.3f} ({q[0]:.3f}–{q[2]:.3f}) | "
              f"{faster} of {len(ratios)} |")
    for n, pairs in rows.items():
        print(json.dumps({"tokens": n, "pairs_ms": [[round(a, 3), round(b, 3)] for a, b in pairs],
                          "median_ratio": round(statistics.median(a / b for a, b in pairs), 4)}))


if __name__ == "__main__":
    main()

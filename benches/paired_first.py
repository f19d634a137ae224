"""The first forward in a process against a warm one, alternated in one sitting (issue 26,
goal 2).

`benches/rounds.py first` compares ten fresh `attnviz export --timings` processes with a
criterion run minutes apart; on the 2-core KVM development machines the host moved the
forward's time by up to 80 % between those (session 23: 1.21 at 128 tokens across processes,
0.99 inside each). Here each pair is one fresh `attnviz export --timings` process (its
`forward_ms`: the first forward, after the load) and then the median of four warm forwards of
the same length in `examples/forward_server.rs`, kept loaded; the verdict is the median of the
per-pair ratios first / warm. Run from anywhere, with the MiniLM checkpoint folder:

    python3 benches/paired_first.py --model DIR --pairs 16

Prints one line per length.
"""

import argparse
import json
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = "/tmp/attnviz_paired_first.npy"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the MiniLM checkpoint folder")
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--pairs", type=int, default=16)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "attnviz", "--example",
                    "forward_server"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "attnviz")
    env = dict(os.environ, ATTNVIZ_MINILM_DIR=args.model)
    server = subprocess.Popen([os.path.join(ROOT, "target", "release", "examples", "forward_server")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    for tokens in args.tokens:
        ids = ",".join(str(1000 + i) for i in range(tokens))
        firsts, warms, ratios = [], [], []
        for _ in range(args.pairs):
            out = subprocess.run([exe, "export", "--model", args.model, "--ids", ids, "--out", OUT,
                                  "--timings"], capture_output=True, text=True, check=True)
            timings = [line for line in (out.stdout + out.stderr).splitlines()
                       if line.startswith("{")]
            first = json.loads(timings[-1])["forward_ms"]
            # Five warm forwards; the first of them follows the export process, so it is left out.
            server.stdin.write(f"{tokens} 5\n")
            server.stdin.flush()
            warm = statistics.median(json.loads(server.stdout.readline())["ms"][1:])
            firsts.append(first)
            warms.append(warm)
            ratios.append(first / warm)
        q = statistics.quantiles(ratios, n=4)
        print(f"{tokens} tokens, {args.pairs} pairs: first {statistics.median(firsts):.2f} ms, "
              f"warm {statistics.median(warms):.2f} ms, first / warm median "
              f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}), "
              f"first faster in {sum(r < 1 for r in ratios)} of {args.pairs}", flush=True)
    server.stdin.close()
    server.wait()
    for path in (OUT, OUT.replace(".npy", ".tokens.json")):
        if os.path.exists(path):
            os.remove(path)


if __name__ == "__main__":
    main()

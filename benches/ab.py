"""Alternating A/B runs of two criterion benchmark binaries, for changes smaller than the host's
noise. On the 2-core KVM development machines the same forward takes 15 ms for some seconds
and 20 ms for the next, so one criterion run before a change and one after cannot resolve a
few per cent; pairs run back to back, in alternating order, can.

    cp "$(ls -t target/release/deps/engine-* | grep -v '\\.d$' | head -1)" /tmp/engine_before
    # ... make the change, then `cargo bench --bench engine --no-run` ...
    cp "$(ls -t target/release/deps/engine-* | grep -v '\\.d$' | head -1)" /tmp/engine_after
    python3 benches/ab.py /tmp/engine_before /tmp/engine_after '^forward_minilm/128$' --pairs 8

Each pair runs A then B (B then A in every other pair, so that a host slowing down over a pair
favours neither), with `--warm-up-time 1 --measurement-time 3` unless told otherwise, and the
table gives every pair's medians, B / A, and the median of those ratios with how many pairs
had B faster. Environment variables (ATTNVIZ_MINILM_DIR and the like) pass through. Needs
nothing beyond the standard library.
"""

import argparse
import statistics
import subprocess

from rounds import parse_criterion

def medians(binary, bench_filter, warm_up, measurement):
    """{benchmark id: criterion's middle estimate in ms} of one run of `binary`."""
    out = subprocess.run([binary, "--bench", bench_filter, "--warm-up-time", str(warm_up),
                          "--measurement-time", str(measurement)],
                         capture_output=True, text=True, check=True).stdout
    return parse_criterion(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a", help="the benchmark binary before the change")
    parser.add_argument("b", help="the benchmark binary after it")
    parser.add_argument("filter", help="criterion's benchmark filter (a regex)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--warm-up", type=float, default=1.0)
    parser.add_argument("--measurement", type=float, default=3.0)
    args = parser.parse_args()
    rows = {}
    for pair in range(args.pairs):
        order = [("a", args.a), ("b", args.b)]
        if pair % 2:
            order.reverse()
        got = {}
        for side, binary in order:
            got[side] = medians(binary, args.filter, args.warm_up, args.measurement)
        for name in sorted(got["a"]):
            if name in got["b"]:
                a, b = got["a"][name], got["b"][name]
                rows.setdefault(name, []).append((a, b))
                print(f"pair {pair + 1}: {name}: A {a:.3f} ms, B {b:.3f} ms, B / A {b / a:.3f}",
                      flush=True)
    if not rows:
        raise SystemExit(f"no benchmark matched {args.filter!r}")
    print("| benchmark | A (ms, per pair) | B (ms, per pair) | median B / A | pairs with B faster |")
    print("|---|---|---|---|---|")
    for name, pairs in rows.items():
        ratios = [b / a for a, b in pairs]
        faster = sum(r < 1 for r in ratios)
        print(f"| {name} | {' / '.join(f'{a:.2f}' for a, _ in pairs)} | "
              f"{' / '.join(f'{b:.2f}' for _, b in pairs)} | {statistics.median(ratios):.3f} | "
              f"{faster} of {len(ratios)} |")


if __name__ == "__main__":
    main()

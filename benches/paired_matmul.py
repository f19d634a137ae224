"""One thread's matrix product, attnviz against ONNX Runtime's MatMul (MLAS), alternated in one
sitting (issue 26).

`benches/paired_ort.py` compares whole MiniLM forwards; this takes one product apart. attnviz's
side is `examples/matmul_server.rs` (`engine::simd::matmul_with` on the best instruction set,
the right operand packed once as the engine packs weights); ONNX Runtime's is a one-node graph
`C = A · B` with B a constant initializer (so MLAS packs it once at load), on 1 intra-op
thread. Both get the same values. Turns of about `--turn-ms`, order swapped every pair, 50 ms
between turns; prints the median per-pair ratio per shape. ONNX Runtime's times include its
Python call (some tens of microseconds), which favours attnviz on small shapes. Pin it to one
core for a clean comparison:

    taskset -c 0 python benches/paired_matmul.py --shapes 128x384x1536 512x1536x384 --pairs 16
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def filled(rows, cols):
    """The values `examples/matmul_server.rs` fills its operands with."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    return (((r * 31 + c * 17) % 23) / 11.0 - 1.0).astype(np.float32)


def ort_matmul(m, k, n):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(filled(k, n), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", nargs="+", default=["128x384x1536", "128x1536x384", "512x384x1536"],
                        help="MxKxN: A is M×K, B is K×N")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--turn-ms", type=float, default=300.0)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "matmul_server"], cwd=ROOT, check=True)
    server = subprocess.Popen([os.path.join(ROOT, "target", "release", "examples", "matmul_server")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ours(m, k, n, calls):
        server.stdin.write(f"{m} {k} {n} {calls}\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())["ms"]

    def theirs(session, a, calls):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            session.run(None, {"A": a})
            times.append((time.perf_counter() - start) * 1e3)
        return times

    print("| M×K×N | attnviz ms (GFLOP/s) | ONNX Runtime ms (GFLOP/s) | attnviz / ORT, median of pairs | attnviz faster |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        m, k, n = (int(x) for x in shape.split("x"))
        session, a = ort_matmul(m, k, n), filled(m, k)
        theirs(session, a, 5)
        calls = max(5, int(args.turn_ms / statistics.median(ours(m, k, n, 5))))
        pairs = []
        for p in range(args.pairs):
            medians = {}
            for side in ("ours", "ort") if p % 2 == 0 else ("ort", "ours"):
                time.sleep(0.05)
                runs = ours(m, k, n, calls) if side == "ours" else theirs(session, a, calls)
                medians[side] = statistics.median(runs)
            pairs.append((medians["ours"], medians["ort"]))
        ratios = [x / y for x, y in pairs]
        gflop = 2 * m * k * n / 1e6
        ta, tb = statistics.median(x for x, _ in pairs), statistics.median(y for _, y in pairs)
        print(f"| {m}×{k}×{n} | {ta:.3f} ({gflop / ta:.1f}) | {tb:.3f} ({gflop / tb:.1f}) | "
              f"{statistics.median(ratios):.3f} | {sum(r < 1 for r in ratios)} of {len(ratios)} |", flush=True)
    server.stdin.close()
    server.wait()


if __name__ == "__main__":
    main()

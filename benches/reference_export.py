"""Reference for the cold, whole-process job: Python with transformers does what
`attnviz export --model DIR --ids ... --out FILE.json` does, from interpreter start to file on disk.

It loads the checkpoint, runs it (eager attention, output_attentions=True, 2 threads, no_grad)
on the same ids as benches/reference_pytorch.py, and writes every layer's and head's attention
as JSON ({"tokens", "attentions": [layer][head][query][key]}). Time it from outside, e.g.

    /usr/bin/time -v ~/attnviz-venv/bin/python benches/reference_export.py --model DIR --tokens 512 --out /tmp/py.json
    /usr/bin/time -v target/release/attnviz export --model DIR --ids "$(python3 benches/reference_export.py --print-ids 512)" --out /tmp/rs.json

Prints one JSON line with the phases it measured itself: {"import_s", "load_s", "forward_s", "write_s"}.
"""

import argparse
import json
import sys
import time


def ids_for(n):
    # The same ids as benches/reference_pytorch.py: 101, (i*31+7) % 1000 + 1000, 102.
    return [101] + [(i * 31 + 7) % 1000 + 1000 for i in range(n - 2)] + [102]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--out")
    parser.add_argument("--print-ids", type=int, metavar="N", help="print the ids for N tokens and exit")
    args = parser.parse_args()
    if args.print_ids:
        print(",".join(str(i) for i in ids_for(args.print_ids)))
        return
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModel

    t1 = time.perf_counter()
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").float().eval()
    t2 = time.perf_counter()
    ids = ids_for(args.tokens)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    t3 = time.perf_counter()
    with open(args.out, "w") as f:
        json.dump({"tokens": ids, "attentions": [a[0].tolist() for a in out.attentions]}, f)
    t4 = time.perf_counter()
    print(json.dumps({"import_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3), "forward_s": round(t3 - t2, 3), "write_s": round(t4 - t3, 3)}), file=sys.stderr)


if __name__ == "__main__":
    main()

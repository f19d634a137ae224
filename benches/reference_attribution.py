"""Reference timings for attribution: torch autograd on the CPU (issue 26).

The same work as `benches/attribution.rs` (criterion `gradient_smollm/128`, `ig32_smollm/128`,
`gradient_minilm_similarity/128`), on the same ids and targets:

- SmolLM2-135M, 128 ids (i*31+7) % 5000 + 1000: one gradient of log p(T) at the last position
  with respect to the input embeddings, T the model's own top-1 there (attnviz's default
  `logprob` target); and integrated gradients, 32 steps, zero baseline, right Riemann sum
  (alpha = k/32, k = 1..32), batched 8 steps per pass as Captum's `internal_batch_size` does.
- all-MiniLM-L6-v2, ids 101, (i*31+7) % 1000 + 1000 for 126 tokens, 102: one gradient of the
  cosine similarity between the mean final hidden state and that of "A dog slept on the rug."
  (computed once, without gradients) with respect to the input (word) embeddings.

Eager attention (what attnviz matches), float32, two threads, two warm-up runs, median of five
(of three for IG). The weights do not require gradients (`requires_grad_(False)`), so torch
computes only what attnviz computes, the gradients of the activations: the fastest torch. Run it in a venv outside the repository:

    python benches/reference_attribution.py --smollm2 DIR --minilm DIR

Prints one JSON line per benchmark: {"name", "median_ms", "runs_ms"}.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer


def timed(name, fn, warm=2, runs=5):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"name": name, "median_ms": round(statistics.median(times), 2),
                      "runs_ms": [round(t, 2) for t in times]}), flush=True)


def smollm2(path):
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").float().eval()
    model.requires_grad_(False)
    ids = torch.tensor([[(i * 31 + 7) % 5000 + 1000 for i in range(128)]])
    embeds = model.get_input_embeddings()(ids).detach()
    with torch.no_grad():
        target = int(model(inputs_embeds=embeds).logits[0, -1].argmax())

    def logprob(e):
        logits = model(inputs_embeds=e).logits[:, -1]
        return torch.log_softmax(logits, dim=-1)[:, target]

    def gradient():
        e = embeds.clone().requires_grad_(True)
        logprob(e).sum().backward()
        return e.grad

    def integrated_gradients(steps=32, batch=8):
        total = torch.zeros_like(embeds[0])
        alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps
        for chunk in alphas.split(batch):
            e = (chunk[:, None, None] * embeds).requires_grad_(True)
            logprob(e).sum().backward()
            total += e.grad.sum(0)
        return (embeds[0] * total / steps).sum(-1)

    timed("gradient_smollm/128", gradient)
    timed("ig32_smollm/128", integrated_gradients, warm=1, runs=3)


def minilm(path):
    model = AutoModel.from_pretrained(path, attn_implementation="eager").float().eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([[101] + [(i * 31 + 7) % 1000 + 1000 for i in range(126)] + [102]])
    with torch.no_grad():
        b = tokenizer("A dog slept on the rug.", return_tensors="pt")
        reference = model(**b).last_hidden_state[0].mean(0)
    embeds = model.get_input_embeddings()(ids).detach()

    def gradient():
        e = embeds.clone().requires_grad_(True)
        mean = model(inputs_embeds=e).last_hidden_state[0].mean(0)
        torch.nn.functional.cosine_similarity(mean, reference, dim=0).backward()
        return e.grad

    timed("gradient_minilm_similarity/128", gradient)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm2")
    parser.add_argument("--minilm")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.smollm2:
        smollm2(args.smollm2)
    if args.minilm:
        minilm(args.minilm)


if __name__ == "__main__":
    main()

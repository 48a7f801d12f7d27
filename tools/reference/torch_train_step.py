"""The LoRA training step of bench/Alora.Bench's `train-speed` scenario, written in plain PyTorch (1.13, Debian's
python3-torch; no transformers, no peft): the peer that Alora's step is timed against in the same run.

A Llama decoder of the given config.json (SmolLM2-135M: hidden 576, 30 layers, 9/3 heads, head_dim 64, FFN 1536,
vocab 49152, tied embeddings) with frozen random weights and a LoRA y = W x + s * B (A x) on q, k and v.
One step = forward + mean cross-entropy over every position (logits[t] predicts token t + 1) + backward (only A and B require
grad) + AdamW step. Prints one JSON line: {"rows", "length", "dtype", "threads", "step_s", "tokens_per_s"}.

Run: /usr/bin/python3 tools/reference/torch_train_step.py --config ../shared/configs/smollm2-135m/config.json \
        --rows 1 --length 512 --rank 32 --dtype f32 --threads 2 --repeats 3
--dtype bf16 stores the frozen weights in bfloat16 (as Alora's bench does) and upcasts each one to f32 where it
is used, so the arithmetic stays f32 as in Alora; f32 stores them in f32.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def read_config(path):
    with open(path) as f:
        c = json.load(f)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if key not in c:
            raise SystemExit(f"{path}: field '{key}' is missing (expected a Llama config.json)")
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    c.setdefault("rms_norm_eps", 1e-5)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("tie_word_embeddings", False)
    return c


class Weights:
    """Frozen random weights (normal, std 0.02; norms at 1), stored in `storage` dtype."""

    def __init__(self, c, storage, generator):
        d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
        hq, hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]

        def w(*shape):
            return (torch.randn(*shape, generator=generator) * 0.02).to(storage)

        self.embedding = w(v, d)                                   # [V, D]
        self.lm_head = self.embedding if c["tie_word_embeddings"] else w(v, d)
        self.final_norm = torch.ones(d)
        self.layers = []
        for _ in range(c["num_hidden_layers"]):
            self.layers.append({
                "attn_norm": torch.ones(d), "mlp_norm": torch.ones(d),
                "q": w(hq * hd, d), "k": w(hkv * hd, d), "v": w(hkv * hd, d), "o": w(d, hq * hd),
                "gate": w(f, d), "up": w(f, d), "down": w(d, f),
            })


class Lora:
    """A [r, in] and B [out, r] per adapted projection, f32, the only tensors that require grad."""

    def __init__(self, c, rank, generator):
        d, hq, hkv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        outs = {"q": hq * hd, "k": hkv * hd, "v": hkv * hd}
        self.factors = []
        for _ in range(c["num_hidden_layers"]):
            layer = {}
            for name, out in outs.items():
                # Both small and non-zero so that every gradient is a real product (B = 0 would zero dA).
                a = ((torch.rand(rank, d, generator=generator) - 0.5) * 0.02).requires_grad_()
                b = ((torch.rand(out, rank, generator=generator) - 0.5) * 0.02).requires_grad_()
                layer[name] = (a, b)
            self.factors.append(layer)

    def parameters(self):
        return [t for layer in self.factors for pair in layer.values() for t in pair]


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(length, head_dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))   # [hd/2]
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv)                    # [T, hd/2]
    angles = torch.cat([angles, angles], dim=-1)                                            # [T, hd]
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    # Llama's rotate-half convention: pairs (i, i + hd/2).
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def step_loss(c, weights, lora, ids, scaling, cos, sin, causal_mask):
    rows, length = ids.shape
    hq, hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]

    def linear(x, w):
        return F.linear(x, w.float())          # a no-op cast for f32 storage; bf16 is upcast where used

    def adapted(x, w, pair):
        a, b = pair
        return linear(x, w) + scaling * F.linear(F.linear(x, a), b)

    h = weights.embedding[ids].float()                                       # [B, T, D]
    for layer, factors in zip(weights.layers, lora.factors):
        x = rms_norm(h, layer["attn_norm"], eps)
        q = adapted(x, layer["q"], factors["q"]).view(rows, length, hq, hd).transpose(1, 2)     # [B, Hq, T, hd]
        k = adapted(x, layer["k"], factors["k"]).view(rows, length, hkv, hd).transpose(1, 2)    # [B, Hkv, T, hd]
        v = adapted(x, layer["v"], factors["v"]).view(rows, length, hkv, hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        group = hq // hkv
        k = k.repeat_interleave(group, dim=1)                                # [B, Hq, T, hd]
        v = v.repeat_interleave(group, dim=1)
        # torch 1.13 has no scaled_dot_product_attention: matmul + masked softmax + matmul.
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)        # [B, Hq, T, T]
        scores = scores.masked_fill(causal_mask, float("-inf"))
        attention = torch.matmul(torch.softmax(scores, dim=-1), v)           # [B, Hq, T, hd]
        attention = attention.transpose(1, 2).reshape(rows, length, hq * hd)
        h = h + linear(attention, layer["o"])
        x = rms_norm(h, layer["mlp_norm"], eps)
        h = h + linear(F.silu(linear(x, layer["gate"])) * linear(x, layer["up"]), layer["down"])
    h = rms_norm(h, weights.final_norm, eps)
    logits = linear(h, weights.lm_head)                                      # [B, T, V]
    # Hugging Face's causal-LM loss, as Alora's trainer computes it: logits[t] predicts ids[t + 1], one mean over
    # the T - 1 labelled positions of every row.
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    c = read_config(args.config)
    generator = torch.Generator().manual_seed(1)
    storage = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    weights = Weights(c, storage, generator)
    lora = Lora(c, args.rank, generator)
    optimizer = torch.optim.AdamW(lora.parameters(), lr=1e-4, weight_decay=0.0)
    scaling = args.alpha / args.rank

    # The same token ids as bench/Alora.Bench's scenario.
    v = c["vocab_size"]
    ids = torch.tensor([[(i * 7919 + r * 104729 + 13) % v for i in range(args.length)] for r in range(args.rows)])
    cos, sin = rope_tables(args.length, c["head_dim"], c["rope_theta"])
    causal_mask = torch.triu(torch.ones(args.length, args.length, dtype=torch.bool), diagonal=1)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(c, weights, lora, ids, scaling, cos, sin, causal_mask)
        loss.backward()
        optimizer.step()
        return float(loss)

    for _ in range(args.warmup):
        one_step()
    best = math.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        loss = one_step()
        best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "rows": args.rows, "length": args.length, "dtype": args.dtype, "rank": args.rank, "threads": args.threads,
        "torch": torch.__version__, "loss": round(loss, 4), "step_s": round(best, 4),
        "tokens_per_s": round(args.rows * args.length / best, 1),
    }))


if __name__ == "__main__":
    main()

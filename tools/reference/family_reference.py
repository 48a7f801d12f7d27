"""Independent reference for the four decoder families Alora reads (Llama, Mistral, Qwen2, Granite), and the generator of
the golden fixtures in tests/Alora.Tests/Fixtures/families/.

Written from Hugging Face transformers' modelling semantics (modeling_llama.py, modeling_mistral.py, modeling_qwen2.py,
modeling_granite.py and masking_utils.py), in plain PyTorch (Debian's python3-torch 1.13; no transformers, no peft,
no numpy) and float64 throughout. What differs between the families:

- Mistral: sliding-window attention. Query position i sees key positions j with j <= i and j > i - sliding_window
  (masking_utils.sliding_window_overlay), i.e. itself and the sliding_window - 1 positions before it.
- Qwen2: q_proj, k_proj and v_proj carry a bias (o_proj does not); tied embeddings here (lm_head = embed_tokens).
- Granite: inputs_embeds * embedding_multiplier; attention scores scaled by attention_multiplier instead of
  1/sqrt(head_dim); each residual branch (attention and MLP) multiplied by residual_multiplier before it is added;
  logits divided by logits_scaling. Tied embeddings.
- Llama: none of these (untied lm_head, GQA), the control.
Shared: RMSNorm (x * rsqrt(mean(x^2) + eps) * w), rotate-half RoPE with inv_freq = theta^(-2i/Dh), GQA (each KV head
serves Hq/Hkv consecutive query heads), SwiGLU MLP down(silu(gate x) * up x).

For each family it writes, under OUT/<family>/:
  config.json, model.safetensors (F32, random weights: a Hugging Face folder that Alora loads),
  reference.json (cases: prompt_ids, greedy_ids, min_top2_margin; plus checks such as how much the sliding window
  changes the logits), logits.safetensors (case_K: [T, V] F32 logits at every position of prompt_ids + greedy_ids[:-1];
  row t predicts token t + 1).
Greedy: argmax of the last position's logits (first index on exact ties), appended, repeated; no stop condition.
Deterministic: the same command gives byte-identical files.

Run (from the repository root):
  /usr/bin/python3 tools/reference/family_reference.py tests/Alora.Tests/Fixtures/families
Cross-check of the reference itself on a trained Llama (stories260K; its golden logits come from a separate PyTorch
reference checked against llama2.c):
  /usr/bin/python3 tools/reference/family_reference.py --check-stories ../shared
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)

COMMON = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 128,
    "max_position_embeddings": 256,
    "hidden_act": "silu",
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}

FAMILIES = {
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False,
    },
    "mistral": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        # Prompts of 20 tokens plus 12 generated: the window bites from position 8 on.
        "sliding_window": 8,
    },
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "use_sliding_window": False, "sliding_window": None,
    },
    "granite": {
        "architectures": ["GraniteForCausalLM"], "model_type": "granite",
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "attention_bias": False, "mlp_bias": False,
        # Each multiplier away from 1 (and 0.25 != 1/sqrt(8)), and sized so that with N(0, 1) embeddings the attention
        # and MLP branches still move the residual stream by a sixth or more (Granite 3.x's 12 and 0.22 would drown
        # them in the scaled embeddings and leave attention barely visible in the logits).
        "embedding_multiplier": 3.0, "residual_multiplier": 0.5, "attention_multiplier": 0.25, "logits_scaling": 4.0,
    },
}

PROMPT_LENGTH = 20
NEW_TOKENS = 12
CASES = 2


def config_of(family):
    c = dict(COMMON)
    c.update(FAMILIES[family])
    return c


def random_weights(c, seed):
    """Random weights by Hugging Face name: norms 1 + N(0, 0.1) (so a misplaced norm shows), matrices N(0, 1/in)."""
    g = torch.Generator().manual_seed(seed)
    d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hq, hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    qkv_bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)

    def normal(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32).double() * std

    def norm():
        return 1.0 + normal(d, std=0.1)

    w = {"model.embed_tokens.weight": normal(v, d, std=1.0)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        for name, out in (("q_proj", hq * hd), ("k_proj", hkv * hd), ("v_proj", hkv * hd)):
            w[p + f"self_attn.{name}.weight"] = normal(out, d, std=d ** -0.5)
            if qkv_bias:
                w[p + f"self_attn.{name}.bias"] = normal(out, std=0.1)
        w[p + "self_attn.o_proj.weight"] = normal(d, hq * hd, std=(hq * hd) ** -0.5)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = normal(f, d, std=d ** -0.5)
        w[p + "mlp.up_proj.weight"] = normal(f, d, std=d ** -0.5)
        w[p + "mlp.down_proj.weight"] = normal(d, f, std=f ** -0.5)
    w["model.norm.weight"] = norm()
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(v, d, std=0.5)
    # Stored as F32: the reference computes with exactly the values Alora reads.
    return {k: t.float().double() for k, t in w.items()}


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x, positions, theta):
    # x: [H, T, Dh]; rotate-half pairs (i, i + Dh/2), as transformers' apply_rotary_pos_emb.
    hd = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))      # [Dh/2]
    angles = positions[:, None].double() * inv_freq[None, :]                              # [T, Dh/2]
    angles = torch.cat([angles, angles], dim=-1)                                          # [T, Dh]
    half = hd // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * angles.cos() + rotated * angles.sin()


def forward(c, w, ids, window=True):
    """Logits [T, V] at every position of ids (one full forward, positions 0..T-1)."""
    t_len = len(ids)
    hq, hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]
    granite = c["model_type"] == "granite"
    embedding_multiplier = c["embedding_multiplier"] if granite else 1.0
    residual_multiplier = c["residual_multiplier"] if granite else 1.0
    scale = c["attention_multiplier"] if granite else hd ** -0.5
    sliding = c.get("sliding_window") if c["model_type"] == "mistral" and window else None

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        bias = w.get(name + ".bias")
        return y if bias is None else y + bias

    positions = torch.arange(t_len)
    q_idx, kv_idx = positions[:, None], positions[None, :]
    allowed = kv_idx <= q_idx
    if sliding is not None:
        allowed = allowed & (kv_idx > q_idx - sliding)

    h = w["model.embed_tokens.weight"][torch.tensor(ids)] * embedding_multiplier          # [T, D]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(t_len, hq, hd).transpose(0, 1)        # [Hq, T, Dh]
        k = linear(x, p + "self_attn.k_proj").view(t_len, hkv, hd).transpose(0, 1)       # [Hkv, T, Dh]
        v = linear(x, p + "self_attn.v_proj").view(t_len, hkv, hd).transpose(0, 1)
        q, k = rope(q, positions, c["rope_theta"]), rope(k, positions, c["rope_theta"])
        k = k.repeat_interleave(hq // hkv, dim=0)                                         # [Hq, T, Dh]
        v = v.repeat_interleave(hq // hkv, dim=0)
        scores = (q @ k.transpose(-1, -2)) * scale                                       # [Hq, T, T]
        scores = scores.masked_fill(~allowed, float("-inf"))
        attention = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(t_len, hq * hd)
        h = h + linear(attention, p + "self_attn.o_proj") * residual_multiplier
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        mlp = linear(torch.nn.functional.silu(linear(x, p + "mlp.gate_proj")) * linear(x, p + "mlp.up_proj"), p + "mlp.down_proj")
        h = h + mlp * residual_multiplier
    h = rms_norm(h, w["model.norm.weight"], eps)
    lm_head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = h @ lm_head.T                                                                # [T, V]
    if granite:
        logits = logits / c["logits_scaling"]
    return logits


def greedy(c, w, prompt, count):
    ids = list(prompt)
    margin = math.inf
    for _ in range(count):
        last = forward(c, w, ids)[-1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        ids.append(int(torch.argmax(last)))
    return ids[len(prompt):], margin


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].float().contiguous()
        raw = struct.pack(f"<{data.numel()}f", *data.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text.encode("utf-8"))
        for raw in blobs:
            out.write(raw)


def read_safetensors(path):
    """F32 tensors of a .safetensors file, as float64."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor '{name}' is {info['dtype']}, this reader takes F32 only")
        begin, end = info["data_offsets"]
        values = struct.unpack(f"<{(end - begin) // 4}f", data[begin:end])
        tensors[name] = torch.tensor(values, dtype=torch.float64).view(*info["shape"])
    return tensors


def check_stories(shared):
    """Cross-check: this reference on stories260K against the established golden logits (shared/fixtures/stories260K)."""
    folder = os.path.join(shared, "models", "stories260K")
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    w = read_safetensors(os.path.join(folder, "model.safetensors"))
    golden = read_safetensors(os.path.join(shared, "fixtures", "stories260K", "logits.safetensors"))
    with open(os.path.join(shared, "fixtures", "stories260K", "tokens.json")) as f:
        cases = json.load(f)["cases"]
    worst = 0.0
    for name, expected in golden.items():
        case = cases[int(name.split("_")[1])]
        ids = case["prompt_ids"] + case["greedy_ids"][:-1]
        worst = max(worst, float((forward(c, w, ids) - expected).abs().max()))
    print(json.dumps({"stories260K_max_abs_diff_vs_golden": worst}))


def write_json(path, value):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(value, out, indent=1)
        out.write("\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check-stories":
        check_stories(sys.argv[2])
        return
    if len(sys.argv) != 2:
        raise SystemExit("usage: family_reference.py OUT_FOLDER | --check-stories SHARED_FOLDER")
    root = sys.argv[1]
    for index, family in enumerate(FAMILIES):
        c = config_of(family)
        folder = os.path.join(root, family)
        os.makedirs(folder, exist_ok=True)
        w = random_weights(c, seed=100 + index)
        write_json(os.path.join(folder, "config.json"), c)
        write_safetensors(os.path.join(folder, "model.safetensors"), w, {"format": "pt"})

        cases, logits = [], {}
        g = torch.Generator().manual_seed(200 + index)
        seed_tries = 0
        while len(cases) < CASES:
            seed_tries += 1
            # Ids from 3 up (clear of BOS/EOS); the first case starts with BOS as a real prompt would.
            prompt = torch.randint(3, c["vocab_size"], (PROMPT_LENGTH,), generator=g).tolist()
            if len(cases) == 0:
                prompt[0] = c["bos_token_id"]
            generated, margin = greedy(c, w, prompt, NEW_TOKENS)
            if margin < 1e-3:
                continue   # too close to a tie for an exact greedy comparison in float32
            ids = prompt + generated[:-1]
            full = forward(c, w, ids)
            case = {"prompt_ids": prompt, "greedy_ids": generated, "min_top2_margin": round(margin, 6),
                    "max_abs_logit": round(float(full.abs().max()), 4)}
            if c["model_type"] == "mistral":
                unwindowed = forward(c, w, ids, window=False)
                case["max_abs_diff_without_window"] = round(float((full - unwindowed).abs().max()), 4)
                case["positions_beyond_window"] = len(ids) - c["sliding_window"]
            logits[f"case_{len(cases)}"] = full
            cases.append(case)
        write_safetensors(os.path.join(folder, "logits.safetensors"), logits)
        write_json(os.path.join(folder, "reference.json"), {
            "generated_by": "/usr/bin/python3 tools/reference/family_reference.py tests/Alora.Tests/Fixtures/families",
            "torch": torch.__version__,
            "family": family,
            "computation": "float64 (weights are the float32 values of model.safetensors); logits stored as float32",
            "logits_rows": "logits.safetensors case_K [T, V]: every position of prompt_ids + greedy_ids[:-1]; row t predicts token t + 1",
            "greedy": "argmax of the last logits (first index on ties), appended, no stop condition",
            "cases": cases,
        })
        print(f"{family}: {len(cases)} cases, margins {[x['min_top2_margin'] for x in cases]}", file=sys.stderr)


if __name__ == "__main__":
    main()

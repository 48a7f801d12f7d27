"""Independent reference for PEFT's add_weighted_adapter combination types, and the generator of the golden fixture in
tests/Alora.Tests/Fixtures/merge-stories260K/.

Written from PEFT's documented semantics (peft/tuners/lora/model.py add_weighted_adapter,
_generalized_task_arithmetic_weighted_adapter, _svd_generalized_task_arithmetic_weighted_adapter, and
peft/utils/merge_utils.py), not from Alora's code, in plain numpy, float64 throughout:

  non-svd types (linear, ties, dare_linear, dare_ties, magnitude_prune): lora_A and lora_B are combined separately,
      A with weights sign(w*s) * sqrt(|w*s|), B with sqrt(|w*s|) (the sign on A only);
  svd types (svd, ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd): the task tensors are the full
      delta weights s * B @ A with weights w (PEFT after huggingface/peft#3111, which removed a second factor s),
      then a truncated SVD: B = U[:, :k] * S[:k], A = Vh[:k], optionally clamped to +-quantile(cat(B, A), q);
  magnitude pruning keeps the int(density * numel) entries of largest |x|; DARE keeps each entry where a Bernoulli
      mask is 1 and divides by density; ties elects the sign from the pruned, unweighted tensors (total: sign of the
      sum, frequency: sign of the count of signs, >= 0 -> +1) and takes the disjoint mean of the weighted tensors
      whose sign agrees (a zero never agrees; divided by max(1, count)).

The DARE masks are drawn here (numpy, seeded) and written to the fixture, so that the C# test can give Alora the same
masks (CombinationOptions.DareMask). SVD signs: each singular pair is flipped so that the entry of largest |.| of A's
row is positive (Alora's LowRankSvd.NormalizeSigns; torch leaves the sign to LAPACK), which matters only with svd_clamp.

Outputs (OUT folder):
  adapters/a0, a1, a2        three PEFT adapters (F32): r 4, alphas 8, 4, 6 (s = 2, 1, 1.5), layer 1 only;
                             a0 and a1 target q_proj, v_proj, down_proj, a2 only q_proj and down_proj
  masks.safetensors          DARE masks (0/1 F32), "L{layer}.{module}.{lora_A|lora_B|delta}.{adapter index}"
  expected.safetensors       per case K: "case_K.L{layer}.{module}.A" / ".B" (non-svd types, and svd cases with clamp),
                             "case_K.L{layer}.{module}.delta" (svd types: B @ A of the combined adapter, scaling 1)
  reference.json             the weights and the cases (type, density, majority_sign_method, svd_rank, svd_clamp)

Run (from the repository root): /usr/bin/python3 tools/reference/merge_reference.py tests/Alora.Tests/Fixtures/merge-stories260K
Deterministic: the same command gives byte-identical files.
"""
import json
import os
import struct
import sys

import numpy as np

HIDDEN, INTERMEDIATE = 64, 172
SHAPES = {"q_proj": ("self_attn", HIDDEN, HIDDEN), "v_proj": ("self_attn", 32, HIDDEN), "down_proj": ("mlp", HIDDEN, INTERMEDIATE)}
LAYERS = [1]
RANK = 4
ADAPTERS = [("a0", 8.0, ["q_proj", "v_proj", "down_proj"]), ("a1", 4.0, ["q_proj", "v_proj", "down_proj"]), ("a2", 6.0, ["q_proj", "down_proj"])]
WEIGHTS = [0.7, -1.2, 0.5]
CASES = [
    {"type": "linear"},
    {"type": "ties", "density": 0.5, "majority_sign_method": "total"},
    {"type": "ties", "density": 0.5, "majority_sign_method": "frequency"},
    {"type": "magnitude_prune", "density": 0.3},
    {"type": "dare_linear", "density": 0.6},
    {"type": "dare_ties", "density": 0.6, "majority_sign_method": "total"},
    {"type": "dare_ties", "density": 0.6, "majority_sign_method": "frequency"},
    {"type": "svd"},
    {"type": "svd", "svd_rank": 2, "svd_clamp": 0.9},
    {"type": "ties_svd", "density": 0.5, "majority_sign_method": "total", "svd_rank": 6},
    {"type": "ties_svd", "density": 0.5, "majority_sign_method": "frequency", "svd_clamp": 0.95},
    {"type": "magnitude_prune_svd", "density": 0.4},
    {"type": "dare_linear_svd", "density": 0.7},
    {"type": "dare_ties_svd", "density": 0.7, "majority_sign_method": "frequency"},
]


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = data.tobytes()
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text.encode("utf-8"))
        for raw in blobs:
            out.write(raw)


def write_json(path, value):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(value, out, indent=1)
        out.write("\n")


def peft_config(alpha, targets):
    return {"task_type": "CAUSAL_LM", "peft_type": "LORA", "auto_mapping": None, "peft_version": "0.18.0",
            "base_model_name_or_path": "stories260K", "revision": None, "inference_mode": True, "r": RANK,
            "target_modules": targets, "exclude_modules": None, "lora_alpha": alpha, "lora_dropout": 0.0,
            "fan_in_fan_out": False, "bias": "none", "use_rslora": False, "modules_to_save": None,
            "init_lora_weights": True, "layers_to_transform": LAYERS, "layers_pattern": None, "rank_pattern": {},
            "alpha_pattern": {}, "megatron_config": None, "megatron_core": "megatron.core",
            "trainable_token_indices": None, "loftq_config": {}, "eva_config": None, "corda_config": None,
            "use_dora": False, "alora_invocation_tokens": None, "use_qalora": False, "qalora_group_size": 16,
            "layer_replication": None, "lora_bias": False, "target_parameters": None, "arrow_config": None,
            "ensure_weight_tying": False}


# --- merge_utils, from PEFT's documented semantics -------------------------------------------------------------

def magnitude_prune_tensor(t, density):
    if density >= 1:
        return t
    k = int(density * t.size)
    flat = t.reshape(-1)
    keep = np.zeros(flat.size, dtype=bool)
    if k > 0:
        keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0.0).reshape(t.shape)


def dare_prune_tensor(t, mask, density):
    if density >= 1:
        return t
    return t * mask / density


def majority_sign(stacked, method):
    if method == "total":
        magnitude = stacked.sum(axis=0)
    elif method == "frequency":
        magnitude = np.sign(stacked).sum(axis=0)
    else:
        raise ValueError(method)
    return np.where(magnitude >= 0, 1.0, -1.0)


def disjoint_merge(weighted, agree):
    total = (weighted * agree).sum(axis=0)
    count = agree.sum(axis=0)
    return total / np.maximum(count, 1.0)


def combine(kind, tensors, weights, density, method, masks):
    weights = np.array(weights).reshape((-1,) + (1,) * tensors[0].ndim)
    if kind in ("linear", "svd"):
        return (np.stack(tensors) * weights).sum(axis=0)
    if kind == "magnitude_prune":
        return (np.stack([magnitude_prune_tensor(t, density) for t in tensors]) * weights).sum(axis=0)
    if kind in ("dare_linear", "dare_ties"):
        pruned = np.stack([dare_prune_tensor(t, m, density) for t, m in zip(tensors, masks)])
    elif kind == "ties":
        pruned = np.stack([magnitude_prune_tensor(t, density) for t in tensors])
    else:
        raise ValueError(kind)
    if kind == "dare_linear":
        return (pruned * weights).sum(axis=0)
    agree = (np.sign(pruned) == majority_sign(pruned, method)).astype(np.float64)
    return disjoint_merge(pruned * weights, agree)


def svd_factors(delta, rank, clamp):
    u, s, vh = np.linalg.svd(delta, full_matrices=True)
    b = u[:, :rank] * s[:rank]
    a = vh[:rank, :].copy()
    if rank > len(s):   # never here: ranks stay below min(out, in)
        raise ValueError("rank above min(out, in)")
    for j in range(rank):
        big = int(np.argmax(np.abs(a[j])))
        if a[j, big] < 0:
            a[j] = -a[j]
            b[:, j] = -b[:, j]
    if clamp is not None:
        hi = np.quantile(np.concatenate([b.reshape(-1), a.reshape(-1)]), clamp)
        b = np.clip(b, -hi, hi) if -hi <= hi else np.full_like(b, hi)
        a = np.clip(a, -hi, hi) if -hi <= hi else np.full_like(a, hi)
    return b, a


def main(out):
    rng = np.random.default_rng(20261203)
    adapters = []
    os.makedirs(os.path.join(out, "adapters"), exist_ok=True)
    for name, alpha, targets in ADAPTERS:
        tensors, modules = {}, {}
        for layer in LAYERS:
            for proj in targets:
                section, out_features, in_features = SHAPES[proj]
                a = rng.normal(0.0, 0.2, size=(RANK, in_features)).astype(np.float32).astype(np.float64)
                b = rng.normal(0.0, 0.1, size=(out_features, RANK)).astype(np.float32).astype(np.float64)
                prefix = f"base_model.model.model.layers.{layer}.{section}.{proj}"
                tensors[prefix + ".lora_A.weight"] = a
                tensors[prefix + ".lora_B.weight"] = b
                modules[(layer, proj)] = (a, b)
        folder = os.path.join(out, "adapters", name)
        os.makedirs(folder, exist_ok=True)
        write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors)
        write_json(os.path.join(folder, "adapter_config.json"), peft_config(alpha, targets))
        adapters.append((alpha / RANK, modules))

    keys = [(layer, proj) for layer in LAYERS for proj in SHAPES]
    masks = {}
    for layer, proj in keys:
        _, out_features, in_features = SHAPES[proj]
        for index, (_, modules) in enumerate(adapters):
            if (layer, proj) not in modules:
                continue
            for tensor, shape in (("lora_A", (RANK, in_features)), ("lora_B", (out_features, RANK)), ("delta", (out_features, in_features))):
                masks[f"L{layer}.{proj}.{tensor}.{index}"] = (rng.random(shape) < 0.65).astype(np.float64)

    expected = {}
    for case_index, case in enumerate(CASES):
        kind = case["type"]
        density = case.get("density")
        method = case.get("majority_sign_method", "total")
        for layer, proj in keys:
            present = [(i, s, m[(layer, proj)]) for i, (s, m) in enumerate(adapters) if (layer, proj) in m]
            prefix = f"case_{case_index}.L{layer}.{proj}"
            if kind.endswith("svd"):
                base = "svd" if kind == "svd" else kind[:-4]
                deltas = [s * b @ a for _, s, (a, b) in present]
                ws = [WEIGHTS[i] for i, _, _ in present]
                ms = [masks.get(f"L{layer}.{proj}.delta.{i}") for i, _, _ in present]
                delta = combine(base, deltas, ws, density, method, ms)
                b, a = svd_factors(delta, case.get("svd_rank", RANK), case.get("svd_clamp"))
                if case.get("svd_clamp") is not None:
                    expected[prefix + ".A"] = a
                    expected[prefix + ".B"] = b
                expected[prefix + ".delta"] = b @ a
            else:
                wb = [np.sqrt(abs(WEIGHTS[i] * s)) for i, s, _ in present]
                wa = [np.sqrt(abs(WEIGHTS[i] * s)) * (1 if WEIGHTS[i] * s >= 0 else -1) for i, s, _ in present]
                a = combine(kind, [ab[0] for _, _, ab in present], wa, density, method,
                            [masks.get(f"L{layer}.{proj}.lora_A.{i}") for i, _, _ in present])
                b = combine(kind, [ab[1] for _, _, ab in present], wb, density, method,
                            [masks.get(f"L{layer}.{proj}.lora_B.{i}") for i, _, _ in present])
                expected[prefix + ".A"] = a
                expected[prefix + ".B"] = b

    write_safetensors(os.path.join(out, "masks.safetensors"), masks)
    write_safetensors(os.path.join(out, "expected.safetensors"), expected)
    write_json(os.path.join(out, "reference.json"), {"weights": WEIGHTS, "adapters": [n for n, _, _ in ADAPTERS], "cases": CASES})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: merge_reference.py OUT_FOLDER")
    main(sys.argv[1])

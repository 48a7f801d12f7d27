"""Independent reference for DoRA (PEFT's use_dora on Linear layers) on stories260K, and the generator of the golden
fixture in tests/Alora.Tests/Fixtures/dora-stories260K/.

Written from PEFT's semantics (peft/tuners/lora/dora.py DoraLinearLayer and variants.py DoraLinearVariant), not from
Alora's code, in plain PyTorch (Debian's python3-torch 1.13; no transformers, no peft), float64 throughout. The Llama
forward is family_reference.forward (written from transformers' modelling code); every adapted Linear becomes

    n      = ||W + s * B @ A||  per output feature (row-wise L2 norm of the [out, in] matrix), computed without gradient
    g      = m / n              (PEFT's mag_norm_scale; m = lora_magnitude_vector, shape [out])
    y      = x W^T + (g - 1) * (x W^T) + g * (B (A x)) * s        (+ bias, none in Llama)

which is PEFT's eval-mode (or lora_dropout = 0) DoRA output `result + (mag_norm_scale - 1) * base_result +
mag_norm_scale * lora_result * scaling`, with `weight_norm.detach()` (DoRA paper section 4.3): the norm is a
constant of the gradient although it depends on A and B.

The adapter is random (seeded): r = 4, lora_alpha = 8 (s = 2), all seven projections of all five layers,
A ~ N(0, 0.1), B ~ N(0, 0.02), and m = ||W + s B A|| * (1 + N(0, 0.1)) so that g differs from 1 (a fresh PEFT DoRA
has m = ||W + s B A|| exactly, g = 1). It is written in PEFT's format: adapter_config.json with use_dora true, and
adapter_model.safetensors with base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight [r, in],
...lora_B.weight [out, r] and ...lora_magnitude_vector [out] (PEFT saves the magnitude without ".weight").

Outputs (OUT folder):
  adapter/adapter_config.json, adapter/adapter_model.safetensors  the DoRA adapter (F32)
  logits.safetensors   case_K [T, V]: logits at every position of case K's ids with the adapter on every row
  grads.safetensors    d loss / d lora_A, lora_B and lora_magnitude_vector of every module, under the PEFT keys
  reference.json       cases (ids), the training batch (ids, labels) and its loss

Run (from the repository root): /usr/bin/python3 tools/reference/dora_reference.py ../shared tests/Alora.Tests/Fixtures/dora-stories260K
Deterministic: the same command gives byte-identical files.
"""
import json
import os
import sys

import torch

import family_reference as fr

MODULES = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]
RANK, ALPHA = 4, 8.0
SCALING = ALPHA / RANK


def make_adapter(c, w, seed):
    g = torch.Generator().manual_seed(seed)
    adapter = {}
    for i in range(c["num_hidden_layers"]):
        for section, proj in MODULES:
            name = f"model.layers.{i}.{section}.{proj}"
            weight = w[name + ".weight"]
            out_f, in_f = weight.shape
            a = (torch.randn(RANK, in_f, generator=g, dtype=torch.float32) * 0.1).double()
            b = (torch.randn(out_f, RANK, generator=g, dtype=torch.float32) * 0.02).double()
            norm = torch.linalg.norm(weight + SCALING * (b @ a), dim=1)
            m = (norm * (1 + 0.1 * torch.randn(out_f, generator=g, dtype=torch.float32).double())).float().double()
            adapter[name] = {"A": a, "B": b, "m": m}
    return adapter


def dora_hook(w, adapter):
    """A linear(x, name) for family_reference.forward that applies DoRA where the adapter has the module."""
    def linear(x, name):
        weight = w[name + ".weight"]
        base = x @ weight.T
        bias = w.get(name + ".bias")
        result = base if bias is None else base + bias
        mod = adapter.get(name)
        if mod is None:
            return result
        a, b, m = mod["A"], mod["B"], mod["m"]
        with torch.no_grad():   # PEFT: lora_weight.detach() inside the norm, then weight_norm.detach()
            norm = torch.linalg.norm(weight + SCALING * (b.detach() @ a.detach()), dim=1)
        scale = (m / norm).view(1, -1)
        lora = (x @ a.T) @ b.T
        return result + (scale - 1) * base + scale * lora * SCALING
    return linear


def peft_key(name, suffix):
    return f"base_model.model.{name}.{suffix}"


def adapter_config():
    return {
        "task_type": "CAUSAL_LM", "peft_type": "LORA", "auto_mapping": None, "peft_version": "0.18.0",
        "base_model_name_or_path": "stories260K", "revision": None, "inference_mode": True, "r": RANK,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "exclude_modules": None, "lora_alpha": ALPHA, "lora_dropout": 0.0, "fan_in_fan_out": False, "bias": "none",
        "use_rslora": False, "modules_to_save": None, "init_lora_weights": True, "layers_to_transform": None,
        "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "megatron_config": None,
        "megatron_core": "megatron.core", "trainable_token_indices": None, "loftq_config": {}, "eva_config": None,
        "corda_config": None, "use_dora": True, "alora_invocation_tokens": None, "use_qalora": False,
        "qalora_group_size": 16, "layer_replication": None, "lora_bias": False, "target_parameters": None,
        "arrow_config": None, "ensure_weight_tying": False,
    }


def loss_of(c, w, hook, batch):
    total, count = 0.0, 0
    for row in batch:
        logits = fr.forward(c, w, row["input_ids"], linear=hook)
        labels = torch.tensor(row["labels"][1:])
        keep = labels != -100
        total = total + torch.nn.functional.cross_entropy(logits[:-1][keep], labels[keep], reduction="sum")
        count += int(keep.sum())
    return total / count, count


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: dora_reference.py SHARED_FOLDER OUT_FOLDER")
    shared, out = sys.argv[1], sys.argv[2]
    folder = os.path.join(shared, "models", "stories260K")
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    w = fr.read_safetensors(os.path.join(folder, "model.safetensors"))
    adapter = make_adapter(c, w, seed=2026)

    os.makedirs(os.path.join(out, "adapter"), exist_ok=True)
    tensors = {}
    for name, mod in adapter.items():
        tensors[peft_key(name, "lora_A.weight")] = mod["A"]
        tensors[peft_key(name, "lora_B.weight")] = mod["B"]
        tensors[peft_key(name, "lora_magnitude_vector")] = mod["m"]
    fr.write_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"), tensors, {"format": "pt"})
    fr.write_json(os.path.join(out, "adapter", "adapter_config.json"), adapter_config())

    # Logits: two stories prompts with their base greedy continuations (every row adapted).
    with open(os.path.join(shared, "fixtures", "stories260K", "tokens.json")) as f:
        stories = json.load(f)["cases"]
    hook = dora_hook(w, adapter)
    cases, logits = [], {}
    for k, index in enumerate((0, 5)):
        ids = stories[index]["prompt_ids"] + stories[index]["greedy_ids"][:24]
        full = fr.forward(c, w, ids, linear=hook)
        base = fr.forward(c, w, ids)
        logits[f"case_{k}"] = full
        cases.append({"ids": ids, "max_abs_diff_vs_base": round(float((full - base).abs().max()), 4)})
    fr.write_safetensors(os.path.join(out, "logits.safetensors"), logits)

    # Gradients: the two labelled rows of shared/fixtures/stories260K/grad-alora-q-k-v, adapter on every row.
    with open(os.path.join(shared, "fixtures", "stories260K", "grad-alora-q-k-v", "grad.json")) as f:
        batch = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in json.load(f)["batch"]]
    for mod in adapter.values():
        for t in mod.values():
            t.requires_grad_(True)
    loss, count = loss_of(c, w, hook, batch)
    loss.backward()
    grads = {}
    for name, mod in adapter.items():
        grads[peft_key(name, "lora_A.weight")] = mod["A"].grad
        grads[peft_key(name, "lora_B.weight")] = mod["B"].grad
        grads[peft_key(name, "lora_magnitude_vector")] = mod["m"].grad
    fr.write_safetensors(os.path.join(out, "grads.safetensors"), grads)

    fr.write_json(os.path.join(out, "reference.json"), {
        "generated_by": "/usr/bin/python3 tools/reference/dora_reference.py ../shared tests/Alora.Tests/Fixtures/dora-stories260K",
        "torch": torch.__version__,
        "computation": "float64 (model and adapter values are the float32 values of the files); results stored as float32",
        "semantics": "PEFT DoRA, eval mode / lora_dropout 0: y = W x + (g - 1) W x + g s B A x, g = m / ||W + s B A||_row, the norm detached",
        "scaling": SCALING,
        "cases": cases,
        "logits_rows": "logits.safetensors case_K [T, V]: every position of cases[K].ids, the adapter on every row",
        "batch": batch,
        "loss": float(loss),
        "n_loss_tokens": count,
        "loss_definition": "mean cross-entropy over every (row, t) whose label t + 1 is not -100, logits[t] predicting labels[t + 1]",
    })
    print(json.dumps({"loss": float(loss), "cases": [x["max_abs_diff_vs_base"] for x in cases]}))


if __name__ == "__main__":
    main()

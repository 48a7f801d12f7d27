"""Independent reference for Arrow routing and GenKnowSub (PEFT's arrow_config) on stories260K, and the generator of the
golden fixture in tests/Alora.Tests/Fixtures/arrow-stories260K/.

Written from PEFT's semantics (peft/tuners/lora/arrow.py ArrowLoraLinearLayer: gen_know_sub, build_prototypes,
forward; create_arrow_model), not from Alora's code, in plain PyTorch (Debian's python3-torch 1.13), float64:

  GenKnowSub   A_e <- A_e - mean_g(A_g), B_e <- B_e - mean_g(B_g), per module, for every task adapter e
  prototype    p_e = top right singular vector of B_e @ A_e (torch.linalg.svd here; PEFT runs 15 power iterations
               from a random start, which converge to it)
  routing      per token x of the module's input: score_e = |x . p_e|; the top_k scores go through
               softmax(score / router_temperature), the others get 0 (PEFT: -inf before the softmax)
  output       y = x W^T + sum_e c_e * s_e * (x A_e^T) B_e^T, s_e = the expert's lora_alpha / r

The Llama forward is family_reference.forward with this projection hook.

Outputs (OUT folder):
  arrow/                    PEFT's save_pretrained layout of an Arrow model: task_0, task_1, task_2 (r 4, lora_alpha 8, 4,
                            16), gks_0, gks_1 (general adapters), arrow_router/adapter_config.json (arrow_config: top_k 2,
                            router_temperature 0.5, use_gks true, the names) and its unused zero lora_A / lora_B
  logits.safetensors        gks_case_K and plain_case_K [T, V]: logits at every position of case K with GenKnowSub, and
                            with use_gks false (the same experts unsubtracted)
  routing.safetensors       for case 0 with GenKnowSub: x.L{l}.{m} [T, in] (the module's input), coeff.L{l}.{m} [T, E]
                            (routing weights) for three modules; proto.L{l}.{m} [E, in] for every module (sign: the
                            largest |entry| positive); gks.A.L2.v_proj.{e}, gks.B.L2.v_proj.{e} (the subtracted experts)
  reference.json            the cases (ids)

Run (from the repository root): /usr/bin/python3 tools/reference/arrow_reference.py ../shared tests/Alora.Tests/Fixtures/arrow-stories260K
Deterministic: the same command gives byte-identical files.
"""
import json
import os
import sys

import torch

import family_reference as fr

MODULES = [("self_attn", "q_proj"), ("self_attn", "v_proj"), ("mlp", "down_proj")]
RANK = 4
TASK_ALPHAS = [8.0, 4.0, 16.0]
GENERALS = 2
TOP_K, TEMPERATURE = 2, 0.5
ROUTING_MODULES = ["model.layers.0.self_attn.q_proj", "model.layers.2.self_attn.v_proj", "model.layers.4.mlp.down_proj"]


def make_adapter(c, w, g):
    adapter = {}
    for i in range(c["num_hidden_layers"]):
        for section, proj in MODULES:
            name = f"model.layers.{i}.{section}.{proj}"
            out_f, in_f = w[name + ".weight"].shape
            a = (0.3 * torch.randn(RANK, in_f, generator=g, dtype=torch.float32)).double()
            b = (0.3 * torch.randn(out_f, RANK, generator=g, dtype=torch.float32)).double()
            adapter[name] = (a, b)
    return adapter


def peft_config(alpha, extra=None):
    config = {"task_type": "CAUSAL_LM", "peft_type": "LORA", "auto_mapping": None, "peft_version": "0.18.0",
              "base_model_name_or_path": "stories260K", "revision": None, "inference_mode": True, "r": RANK,
              "target_modules": [p for _, p in MODULES], "exclude_modules": None, "lora_alpha": alpha,
              "lora_dropout": 0.0, "fan_in_fan_out": False, "bias": "none", "use_rslora": False,
              "modules_to_save": None, "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
              "rank_pattern": {}, "alpha_pattern": {}, "megatron_config": None, "megatron_core": "megatron.core",
              "trainable_token_indices": None, "loftq_config": {}, "eva_config": None, "corda_config": None,
              "use_dora": False, "alora_invocation_tokens": None, "use_qalora": False, "qalora_group_size": 16,
              "layer_replication": None, "lora_bias": False, "target_parameters": None, "arrow_config": None,
              "ensure_weight_tying": False}
    if extra:
        config.update(extra)
    return config


def write_adapter(folder, adapter, alpha, extra=None, zeros=False):
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, (a, b) in adapter.items():
        prefix = "base_model.model." + name
        tensors[prefix + ".lora_A.weight"] = torch.zeros_like(a) if zeros else a
        tensors[prefix + ".lora_B.weight"] = torch.zeros_like(b) if zeros else b
    fr.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors, {"format": "pt"})
    fr.write_json(os.path.join(folder, "adapter_config.json"), peft_config(alpha, extra))


def gen_know_sub(tasks, generals):
    result = []
    for task in tasks:
        purified = {}
        for name, (a, b) in task.items():
            mean_a = torch.stack([g[name][0] for g in generals]).mean(0)
            mean_b = torch.stack([g[name][1] for g in generals]).mean(0)
            purified[name] = ((a.float() - mean_a.float()).double(), (b.float() - mean_b.float()).double())   # PEFT subtracts in the weights' f32
        result.append(purified)
    return result


def prototype(a, b):
    _, _, vh = torch.linalg.svd(b @ a)
    v = vh[0]
    return v if v[torch.argmax(v.abs())] >= 0 else -v


def arrow_hook(w, experts, scalings, record=None):
    protos = {name: torch.stack([prototype(*e[name]) for e in experts]) for name in experts[0]}

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        if name not in protos:
            return y
        score = (x @ protos[name].T).abs()                                        # [T, E]
        top = torch.topk(score, TOP_K, dim=1)
        full = torch.full_like(score, float("-inf")).scatter(1, top.indices, top.values)
        coeff = torch.softmax(full / TEMPERATURE, dim=1)                          # [T, E]
        delta = torch.zeros_like(y)
        for e, expert in enumerate(experts):
            a, b = expert[name]
            delta = delta + coeff[:, e:e + 1] * scalings[e] * ((x @ a.T) @ b.T)
        if record is not None and name in ROUTING_MODULES:
            record["x." + short(name)] = x.clone()
            record["coeff." + short(name)] = coeff.clone()
        return y + delta

    return linear, protos


def short(name):
    parts = name.split(".")
    return f"L{parts[2]}.{parts[4]}"


def main(shared, out):
    folder = os.path.join(shared, "models", "stories260K")
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    w = fr.read_safetensors(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(shared, "fixtures", "stories260K", "tokens.json")) as f:
        token_cases = json.load(f)["cases"]
    cases = [(case["prompt_ids"] + case["greedy_ids"])[:24] for case in token_cases[:2]]

    g = torch.Generator().manual_seed(1405)
    tasks = [make_adapter(c, w, g) for _ in TASK_ALPHAS]
    generals = [make_adapter(c, w, g) for _ in range(GENERALS)]
    scalings = [alpha / RANK for alpha in TASK_ALPHAS]

    arrow = os.path.join(out, "arrow")
    for e, (task, alpha) in enumerate(zip(tasks, TASK_ALPHAS)):
        write_adapter(os.path.join(arrow, f"task_{e}"), task, alpha)
    for j, general in enumerate(generals):
        write_adapter(os.path.join(arrow, f"gks_{j}"), general, 8.0)
    router = {"top_k": TOP_K, "router_temperature": TEMPERATURE, "use_gks": True,
              "task_adapter_names": [f"task_{e}" for e in range(len(tasks))],
              "gks_adapter_names": [f"gks_{j}" for j in range(GENERALS)], "rng_seed": None}
    write_adapter(os.path.join(arrow, "arrow_router"), tasks[0], 8.0, {"arrow_config": router}, zeros=True)

    purified = gen_know_sub(tasks, generals)
    logits, record = {}, {}
    with torch.no_grad():
        for k, ids in enumerate(cases):
            hook, protos = arrow_hook(w, purified, scalings, record if k == 0 else None)
            logits[f"gks_case_{k}"] = fr.forward(c, w, ids, linear=hook)
            plain_hook, _ = arrow_hook(w, tasks, scalings)
            logits[f"plain_case_{k}"] = fr.forward(c, w, ids, linear=plain_hook)
    for name, p in protos.items():
        record["proto." + short(name)] = p
    for e, expert in enumerate(purified):
        a, b = expert["model.layers.2.self_attn.v_proj"]
        record[f"gks.A.L2.v_proj.{e}"] = a
        record[f"gks.B.L2.v_proj.{e}"] = b

    fr.write_safetensors(os.path.join(out, "logits.safetensors"), logits)
    fr.write_safetensors(os.path.join(out, "routing.safetensors"), record)
    fr.write_json(os.path.join(out, "reference.json"), {
        "generated_by": "/usr/bin/python3 tools/reference/arrow_reference.py ../shared tests/Alora.Tests/Fixtures/arrow-stories260K",
        "torch": torch.__version__, "top_k": TOP_K, "router_temperature": TEMPERATURE, "scalings": scalings,
        "cases": [{"ids": ids} for ids in cases]})


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: arrow_reference.py SHARED OUT_FOLDER")
    main(sys.argv[1], sys.argv[2])

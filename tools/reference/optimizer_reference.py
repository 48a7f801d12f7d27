"""Reference values for tests/Alora.Tests/Training/OptimizerTests.cs, from torch (Debian python3-torch).

Run: /usr/bin/python3 tools/reference/optimizer_reference.py
"""
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

grads = [[0.1, -0.2, 0.3], [-0.05, 0.4, 0.1], [0.2, 0.2, -0.6]]

def run(opt_factory):
    a = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float32))
    b = torch.nn.Parameter(torch.tensor([0.25, 0.0, -0.75], dtype=torch.float32))
    opt = opt_factory(a, b)
    for g in grads:
        a.grad = torch.tensor(g, dtype=torch.float32)
        b.grad = torch.tensor(g, dtype=torch.float32) * 2
        opt.step()
    return a.detach().tolist(), b.detach().tolist()

print("adamw", run(lambda a, b: torch.optim.AdamW([a, b], lr=0.01, weight_decay=0.1)))
print("adamw_loraplus", run(lambda a, b: torch.optim.AdamW([{"params": [a]}, {"params": [b], "lr": 0.01 * 16}], lr=0.01, weight_decay=0.1)))
print("sgd", run(lambda a, b: torch.optim.SGD([a, b], lr=0.1, weight_decay=0.01)))

p = torch.nn.Parameter(torch.zeros(2))
p.grad = torch.tensor([3.0, 4.0])
norm = torch.nn.utils.clip_grad_norm_([p], 1.0)
print("clip", float(norm), p.grad.tolist())

def linear(step, warmup=10, total=100):
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))

def cosine(step, warmup=10, total=100):
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

for name, fn in [("linear", linear), ("cosine", cosine)]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LambdaLR(opt, fn)
    rates = []
    for step in range(101):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    print(name, [rates[i] for i in (0, 5, 10, 55, 99, 100)])

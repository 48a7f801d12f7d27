#!/usr/bin/env bash
# Installs the benchmark peers: OpenBLAS (cblas_sgemm), loaded by bench/Alora.Bench as libopenblas.so.0, and
# PyTorch (Debian's python3-torch), run by the train-speed scenario (tools/reference/torch_train_step.py).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y libopenblas-dev python3-torch

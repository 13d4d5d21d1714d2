#!/bin/sh
# Wheels for bench/gpu_train.py on the lent H200, which has no network: its image lacks bitsandbytes and
# liger-kernel, and carries transformers 5.17 (the payload pins 5.23) and an unpinned peft. Run once, here, from
# the repository root after `echo /.whl/ >> .git/info/exclude`; the device run then names `.whl` in `carry`
# (about 56 MiB, under the 64 MiB a call may carry with the working tree).
set -eu
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  bitsandbytes==0.50.2 transformers==5.23.0 peft==0.21.2 liger-kernel==0.8.5
du -sh .whl

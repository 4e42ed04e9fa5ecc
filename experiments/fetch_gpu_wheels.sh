#!/usr/bin/env bash
# Downloads into .whl/ the wheels that experiments/gpu_check.sh installs on the lent GPU machine, whose image
# has jax 0.11.2 (CUDA), torch 2.11, numpy, scipy, pillow, opencv, absl, protobuf, tensorstore, msgpack, rich, ...
# but not the data stack below. flax, optax and orbax-checkpoint are there too, in versions not known here, so
# the versions this project is tested with travel as well. Run from anywhere; about 13 MB. .whl/ is ignored by
# the repository's .gitignore.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
py=${PYTHON:-python3}
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  tensorflow-datasets==4.9.10 array-record==0.8.6 grain==0.2.18 googleapis-common-protos==1.76.0 \
  dm-tree==0.1.10 etils==1.15.0 simple-parsing==0.1.9 tensorboardX==2.6.5 ml-collections==1.1.0 \
  importlib_resources==7.1.0 tensorflow-metadata==1.21.0 docstring-parser==0.18.0 toml==0.10.2 \
  termcolor==3.3.0 immutabledict==4.3.1 portpicker==1.6.0 \
  flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 treescope==0.1.10
# promise is published as an sdist only: build its (pure-Python) wheel here, so the device installs wheels only
$py -m pip wheel -q --no-deps -w .whl promise==2.3
ls -l .whl
du -ch .whl/* | tail -1

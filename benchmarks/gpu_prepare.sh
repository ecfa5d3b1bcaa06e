#!/usr/bin/env bash
# Prepare, here (where PyPI and ../shared/data are reachable), what the device machine needs to
# run benchmarks/gpu_check.py: wheels of the packages its image lacks (hydra-core, omegaconf,
# antlr4-python3-runtime; wandb and snownlp are not needed) in .whl/, and the CIFAR-10 tarball
# and the ChnSentiCorp TSVs in .gpu_data/. Both folders are git-ignored; the device tool's `run`
# carries them (BENCHMARKS.md, "GPU", has the command). Checks that what travels stays under
# the tool's 64 MiB a call. Run from anywhere: bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSL_LAB_DATA:-../shared/data}
LIMIT_MIB=64
if [[ ! -f "$DATA/cifar10-jpeg.tar.gz" ]]; then
  echo "gpu_prepare: no $DATA/cifar10-jpeg.tar.gz: set SSL_LAB_DATA to the shared data folder" >&2
  exit 1
fi

rm -rf .whl .gpu_data
mkdir -p .whl .gpu_data

# the versions tested here; Python 3.12, manylinux x86_64 (the device's python3)
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
for package in hydra-core omegaconf; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "$package==$(version "$package")"
done
# PyPI has antlr4-python3-runtime 4.9.x only as a source archive: build its pure-Python wheel
python3 -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

cp "$DATA/cifar10-jpeg.tar.gz" "$DATA/zh_chnsenticorp_train.tsv" "$DATA/zh_chnsenticorp_dev.tsv" \
  .gpu_data/

ls -l .whl .gpu_data
# what a call sends: tracked and untracked-not-ignored files, plus the carried folders
tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s -- 2>/dev/null \
  | awk '{s += $1} END {print s + 0}')
carried_bytes=$(du -sb .whl .gpu_data | awk '{s += $1} END {print s}')
total_mib=$(( (tree_bytes + carried_bytes) / 1048576 ))
echo "travels: working tree $((tree_bytes / 1024)) KiB + .whl and .gpu_data" \
  "$((carried_bytes / 1024)) KiB = ${total_mib} MiB (limit ${LIMIT_MIB} MiB)"
if (( total_mib >= LIMIT_MIB )); then
  echo "gpu_prepare: over the device tool's ${LIMIT_MIB} MiB a call" >&2
  exit 1
fi

#!/usr/bin/env bash
# Installs keras-adntn with everything its tests need, then runs the whole
# suite once per Keras backend. Any failing backend fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU wheel; an unpinned torch pulls a
# multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,docs,tensorflow,jax,litert,demo]"
ruff check keras_adntn keras_adntn_cli tests benchmarks examples
NO_MKDOCS_2_WARNING=1 mkdocs build --strict -d "$(mktemp -d)"
status=0
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend"
  # torch's intra-op threads cost more than they give on the many tiny
  # generator contractions of a 2-core machine
  if [ "$backend" = torch ]; then
    export OMP_NUM_THREADS=1
  fi
  # -n 2: both cores (pytest-xdist); --dist loadfile keeps a file's tests,
  # and so its module-scoped trained fixtures, on one worker. -rs lists
  # every skip; one not in tests/expected_skips.txt fails the run
  # (tests/conftest.py).
  KERAS_BACKEND=$backend python -m pytest tests -p no:cacheprovider \
    -n 2 --dist loadfile -rs --durations=20 || status=1
done
exit $status

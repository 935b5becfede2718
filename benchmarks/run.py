"""Run the side-by-side benchmark (the same as ``npae bench``); see npae/bench.py for what it measures.

    python benchmarks/run.py                 # all six models, npae vs PyTorch if installed
    python benchmarks/run.py --quick         # tiny sizes, a smoke test
    python benchmarks/run.py --tf-python /path/to/tf-venv/bin/python   # TF-Keras as a second peer
"""

import argparse

from npae.bench import run_benchmark
from npae.cli import MODELS

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-epoch", action="store_true", help="skip the 60k-sample epoch subprocesses")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--tf-python", help="a Python with tensorflow + keras (default: $NPAE_BENCH_TF_PYTHON, else this)")
    a = p.parse_args()
    run_benchmark(a.models, quick=a.quick, out_dir=a.out, epoch=False if a.no_epoch else None,
                  tf_python=a.tf_python)

"""The benchmark runs at tiny sizes and computes its derived numbers right (no timing asserted)."""

import json

import pytest

from npae import autoencoders, bench


def test_flops_per_sample_by_hand():
    ae = autoencoders.vanilla(seed=0)[0]
    assert bench.flops_per_sample(ae) == 3 * 2 * (784 * 64 + 64 * 784)
    conv = autoencoders.convolutional(seed=0)[0]
    first = 2 * 28 * 28 * 9 * 1 * 16  # the first conv alone
    assert bench.flops_per_sample(conv) > 3 * first


def test_ratio():
    assert bench.ratio(300.0, 100.0) == 3.0 and bench.ratio(1.0, None) is None


def test_quick_benchmark_runs_and_writes_results(tmp_path):
    res = bench.run_benchmark(["vanilla"], quick=True, out_dir=str(tmp_path), peers=False, print_fn=lambda *a: None)
    row = res["models"]["vanilla"]
    assert row["train"]["npae"] > 0 and row["predict"]["npae"] > 0
    assert row["flops_per_sample"] == bench.flops_per_sample(autoencoders.vanilla(seed=0)[0])
    names = [r["layer"] for r in row["profile"]]
    assert names == ["DenseStep(dense)", "DenseStep(dense_1)", "optimizer step"] or (
        len(names) == 3 and names[0].startswith("DenseStep(") and names[-1] == "optimizer step")
    assert row["plan"][-1] == "LossStep(mse)"
    saved = json.loads((tmp_path / "results.json").read_text())["models"]["vanilla"]
    assert saved["train_ratio_vs_best_peer"] is None and "train_ratio_vs_torch" not in saved
    assert "| vanilla |" in (tmp_path / "results.md").read_text()


def test_baseline_engine_runs_another_checkout(tmp_path, monkeypatch):
    import os
    import shutil

    # a checkout elsewhere, measured from inside this one: its worker must import the checkout's
    # npae, not the one in the working directory (which `python -c` puts first on sys.path)
    here = os.path.dirname(os.path.dirname(bench.__file__))
    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.join(here, "npae"), checkout / "npae", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(here)
    res = bench.run_benchmark(["vanilla"], quick=True, out_dir=str(tmp_path), peers=False, print_fn=lambda *a: None,
                              baseline=os.path.relpath(checkout))  # (relative to the working directory)
    row = res["models"]["vanilla"]
    assert row["train"]["baseline"] > 0 and row["train_ratio_vs_baseline"] > 0
    assert "vs baseline" in (tmp_path / "results.md").read_text()
    with pytest.raises(ValueError, match="holds no npae package"):
        bench.run_benchmark(["vanilla"], quick=True, out_dir=str(tmp_path), peers=False, baseline=str(tmp_path))


def test_epoch_subprocess_reports_memory_less_data():
    out = bench.epoch_in_subprocess("vanilla", "npae", n=1024)
    assert out["wall_s"] > 0 and out["peak_rss_mb"] > out["data_mb"] > 3
    assert out["rss_less_data_mb"] == pytest.approx(out["peak_rss_mb"] - out["data_mb"])


def test_best_peer_and_ratio_against_it():
    rates = {"npae": 120.0, "torch": 100.0, "tf": 150.0}
    assert bench.best_peer(rates) == ("tf", 150.0)
    assert bench.ratio(rates["npae"], bench.best_peer(rates)[1]) == pytest.approx(0.8)
    assert bench.best_peer({"npae": 1.0}) == (None, None)


def test_missing_tf_interpreter_is_reported_not_fatal(tmp_path):
    path, versions, why = bench.find_tf_python(str(tmp_path / "no-such-python"))
    assert path is None and versions is None and "cannot run" in why
    # an interpreter without tensorflow: the reason names the import error
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named tensorflow' >&2\nexit 1\n")
    fake.chmod(0o755)
    path, versions, why = bench.find_tf_python(str(fake))
    assert path is None and "No module named tensorflow" in why


def test_markdown_table_has_a_column_per_peer():
    env = {"processor": "x86_64", "threads": 2, "python": "3.11", "numpy": "2", "numba": "0.6", "torch": "2.13",
           "tensorflow": "2.21", "gemm_gflops": 100.0, "numba_threading_layer": "omp",
           "openblas_thread_timeout": "4"}
    row = {"train": {"npae": 300.0, "torch": 100.0, "tf": 200.0}, "predict": {"npae": 50.0, "torch": 100.0, "tf": 80.0},
           "train_ratio_vs_best_peer": 1.5, "predict_ratio_vs_best_peer": 0.5,
           "epoch": {e: {"wall_s": 1.0, "rss_less_data_mb": 10.0} for e in ("npae", "torch", "tf")}}
    lines = bench.markdown_table({"env": env, "models": {"vanilla": row}}).splitlines()
    header, rule, body = lines[2], lines[3], lines[4]
    assert "TF-Keras train/s" in header and "PyTorch predict/s" in header
    assert header.count("|") == rule.count("|") == body.count("|")
    assert "| vanilla | 300 | 100 | 200 | 1.50 | 50 | 100 | 80 | 0.50 | 1.0 / 1.0 / 1.0 |" in body


def test_epoch_subprocess_does_not_count_the_parents_memory():
    # Linux carries ru_maxrss across fork + exec; the child must report its own high-water mark
    import numpy as np

    parent = np.ones(400 * 2**20 // 8)  # 400 MB held (and touched) by this process
    out = bench.epoch_in_subprocess("vanilla", "npae", n=512)
    assert parent[-1] == 1.0 and out["peak_rss_mb"] < 400

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
    assert row["npae_pct_of_roofline"] == pytest.approx(
        100 * row["train"]["npae"] * row["flops_per_sample"] / (res["env"]["gemm_gflops"] * 1e9))
    names = [r["layer"] for r in row["profile"]]
    assert names[-1] == "optimizer step" and len(names) == 3
    assert json.loads((tmp_path / "results.json").read_text())["models"]["vanilla"]["train_ratio_vs_torch"] is None
    assert "| vanilla |" in (tmp_path / "results.md").read_text()


def test_epoch_subprocess_reports_memory_less_data():
    out = bench.epoch_in_subprocess("vanilla", "npae", n=1024)
    assert out["wall_s"] > 0 and out["peak_rss_mb"] > out["data_mb"] > 3
    assert out["rss_less_data_mb"] == pytest.approx(out["peak_rss_mb"] - out["data_mb"])

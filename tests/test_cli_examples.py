"""The command line and the tutorial's example programs, end to end on small data."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npae import cli

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def not_blank(path: Path) -> bool:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    return float(pixels[..., :3].std()) > 0.02



@pytest.mark.parametrize("model", ["vanilla", "denoising", "transposed", "unet"])
def test_train_writes_model_history_figures_and_summary(model, data_env, tmp_path, capsys):
    out = tmp_path / model
    code = cli.main(["train", model, "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "512",
                     "--batch-size", "128", "--out", str(out), "--verbose", "0"])
    assert code == 0
    for name in ("loss.png", "reconstructions.png", "codes.png", "filters.png"):
        assert is_png(out / name) and not_blank(out / name), name
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 1 and float(rows[0]["loss"]) > 0 and float(rows[0]["val_loss"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == model and summary["settings"]["epochs"] == 1 and summary["seconds"] > 0
    assert summary["final"]["val_loss"] == pytest.approx(float(rows[0]["val_loss"]))
    assert "trained" in capsys.readouterr().out
    assert cli.main(["predict", str(out / "model.npz"), "--out", str(tmp_path / "pred"),
                     "--dataset", "fashion-mnist"]) == 0
    assert is_png(tmp_path / "pred" / "reconstructions.png")


def test_resume_continues_an_interrupted_run_exactly(data_env, tmp_path, capsys):
    # 3 epochs straight vs 1 epoch, then --resume to 3: same history, same weights
    common = ["--dataset", "fashion-mnist", "--limit", "384", "--batch-size", "128", "--verbose", "0"]
    assert cli.main(["train", "vanilla", "--epochs", "3", "--out", str(tmp_path / "a"), *common]) == 0
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(tmp_path / "b"), *common]) == 0
    progress = json.loads((tmp_path / "b" / "progress.json").read_text())
    assert progress["epochs_done"] == 1 and (tmp_path / "b" / "checkpoint.npz").is_file()
    assert cli.main(["train", "vanilla", "--epochs", "3", "--out", str(tmp_path / "b"), "--resume", *common]) == 0
    assert "resuming vanilla at epoch 2 of 3" in capsys.readouterr().out
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert b["epochs_run"] == 3 and b["history"] == a["history"]
    assert list(csv.DictReader(open(tmp_path / "a" / "history.csv"))) == \
        list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    wa, wb = (np.load(tmp_path / d / "model.npz") for d in "ab")
    for key in wa.files:
        if key.startswith(("weight_", "opt_")):
            np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)
    # resuming a finished run trains nothing and rewrites the outputs with the whole history
    assert cli.main(["train", "vanilla", "--epochs", "3", "--out", str(tmp_path / "b"), "--resume", *common]) == 0
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert again["history"] == a["history"] and again["epochs_run"] == 3 and again["final"] == a["final"]


def test_train_on_the_reference_path(data_env, tmp_path):
    common = ["--dataset", "mnist", "--limit", "256", "--batch-size", "128", "--verbose", "0", "--epochs", "1"]
    assert cli.main(["train", "convolutional", "--no-jit", "--out", str(tmp_path / "ref"), *common]) == 0
    assert cli.main(["train", "convolutional", "--out", str(tmp_path / "fast"), *common]) == 0
    ref, fast = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ref", "fast"))
    assert ref["final"]["loss"] == pytest.approx(fast["final"]["loss"], rel=1e-4)


def test_resume_refuses_other_settings_or_a_missing_checkpoint(data_env, tmp_path, capsys):
    common = ["--dataset", "fashion-mnist", "--limit", "256", "--batch-size", "128", "--verbose", "0"]
    assert cli.main(["train", "vanilla", "--epochs", "1", "--out", str(tmp_path / "a"), *common]) == 0
    capsys.readouterr()
    assert cli.main(["train", "vanilla", "--epochs", "2", "--out", str(tmp_path / "a"), "--resume", "--seed", "1",
                     *common]) == 2
    assert "other settings (saved vs now: seed: 0 vs 1)" in capsys.readouterr().err
    assert cli.main(["train", "sparse", "--epochs", "2", "--out", str(tmp_path / "a"), "--resume", *common]) == 2
    assert "model: 'vanilla' vs 'sparse'" in capsys.readouterr().err
    assert cli.main(["train", "vanilla", "--epochs", "2", "--out", str(tmp_path / "none"), "--resume", *common]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_denoising_figure_has_three_rows(data_env, tmp_path):
    import matplotlib.image as mpimg

    cli.main(["train", "denoising", "--dataset", "fashion-mnist", "--epochs", "0", "--limit", "64",
              "--out", str(tmp_path), "--verbose", "0"])
    h3, w3 = mpimg.imread(tmp_path / "reconstructions.png").shape[:2]
    cli.main(["train", "vanilla", "--dataset", "fashion-mnist", "--epochs", "0", "--limit", "64",
              "--out", str(tmp_path / "v"), "--verbose", "0"])
    h2, w2 = mpimg.imread(tmp_path / "v" / "reconstructions.png").shape[:2]
    assert h3 / w3 > 1.3 * h2 / w2


@pytest.mark.parametrize("model,path", [("vanilla", []), ("convolutional", []), ("sparse", []),
                                        ("convolutional", ["--no-jit"]), ("deep", ["--no-jit"]),
                                        ("transposed", []), ("transposed", ["--no-jit"])])
def test_gradcheck_command(model, path, capsys):
    assert cli.main(["gradcheck", model, *path]) == 0
    out = capsys.readouterr().out
    assert "worst rel err" in out and "passed" in out and "FAIL" not in out
    assert ("reference path" if path else "fast path") in out


def test_summary_command(capsys):
    assert cli.main(["summary", "vanilla"]) == 0
    assert "Total params: 101,200" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["train", "resnet"], "invalid choice: 'resnet'"),
    (["train", "vanilla", "--epochs", "-3"], "expected a whole number >= 0, got -3"),
    (["train", "vanilla", "--batch-size", "0"], "expected a whole number >= 1"),
    (["train", "vanilla", "--batch-size", "-3"], "expected a whole number >= 1, got -3"),
    (["train", "vanilla", "--seed", "-1"], "expected a whole number >= 0, got -1"),
    (["train", "vanilla", "--out", ""], "expected a folder name, got an empty one"),
    (["train", "vanilla", "--data-dir", "/nonexistent-npae"], "does not hold the mnist train files"),
    (["predict", "/nonexistent/model.npz", "--out", "x"], "no model file"),
])
def test_bad_arguments_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        raise SystemExit(cli.main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("npae: error:") and message in err and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "npae", "summary", "sparse"], capture_output=True, text=True)
    assert res.returncode == 0 and "Total params: 101,200" in res.stdout


@pytest.mark.parametrize("script,figure", [
    ("simple_autoencoder.py", "simple_autoencoder.png"),
    ("deep_autoencoder.py", "deep_autoencoder.png"),
    ("sparse_autoencoder.py", "sparse_code_activations.png"),
    ("convolutional_autoencoder.py", "convolutional_autoencoder.png"),
    ("denoising_autoencoder.py", "denoising_autoencoder.png"),
    ("transposed_denoising_autoencoder.py", "transposed_denoising_autoencoder.png"),
    ("frozen_encoder.py", "frozen_encoder.png"),
    ("unet_denoiser.py", "unet_denoiser.png"),
])
def test_examples_run_and_draw(script, figure, data_env, tmp_path):
    env = {**os.environ, "NPAE_DATA_DIR": str(data_env)}
    res = subprocess.run([sys.executable, str(REPO / "examples" / script), "--epochs", "1", "--dataset",
                          "fashion-mnist", "--limit", "300", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert is_png(tmp_path / figure) and not_blank(tmp_path / figure)
    if script == "frozen_encoder.py":  # the example checks its frozen encoder itself, and says so
        assert "encoder weights unchanged: True; codes unchanged: True" in res.stdout
    if script.startswith("transposed"):
        assert "val_mae" in res.stdout and "mean absolute error" in res.stdout
    if script.startswith("convolutional"):  # the tutorial's TensorBoard callback logged something
        logs = tmp_path / "autoencoder_logs"
        assert any(p.is_file() and p.stat().st_size > 0 for p in logs.rglob("*"))


def test_plots_render_real_content(tmp_path):
    from npae import plots

    rng = np.random.default_rng(0)
    plots.plot_codes(rng.standard_normal((200, 8)), rng.integers(0, 10, 200), tmp_path / "codes.png")
    plots.plot_filters(rng.standard_normal((3, 3, 1, 16)), tmp_path / "filters.png")
    for name in ("codes.png", "filters.png"):
        assert is_png(tmp_path / name) and not_blank(tmp_path / name)
    blank = tmp_path / "blank.png"
    import matplotlib.pyplot as plt

    plots.save_figure(plt.figure(figsize=(3, 3)), blank)
    assert is_png(blank) and not not_blank(blank)  # the detector itself can fail


def test_pca_projects_to_principal_axes():
    from npae.plots import pca_2d

    rng = np.random.default_rng(1)
    data = rng.standard_normal((500, 5)) * [10, 0.1, 3, 0.1, 0.1]
    xy = pca_2d(data)
    assert xy.shape == (500, 2) and xy[:, 0].std() > xy[:, 1].std() > 2

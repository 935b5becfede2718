"""Callbacks: history, progress output, NaN guard, Ctrl-C, early stopping, checkpoints, CSV, TensorBoard."""

import io
import signal
import struct
import sys

import numpy as np
import pytest

from npae import autoencoders, callbacks
from npae.models import load_model


def small_model(seed=0):
    ae, _, _ = autoencoders.vanilla(encoding_dim=4, input_dim=10, seed=seed)
    x = np.random.default_rng(seed).uniform(0, 1, (64, 10)).astype(np.float32)
    return ae, x


class Hook(callbacks.Callback):
    def __init__(self, on_batch):
        self.on_batch = on_batch

    def on_batch_end(self, batch, logs=None):
        self.on_batch(self, batch)


def test_nan_loss_stops_and_keeps_weights_from_before_the_batch(capsys):
    ae, x = small_model()
    x[40] = np.nan  # batch 3 of 4 (batch size 16, no shuffle) holds the NaN
    ae.fit(x[:32], x[:32], epochs=1, batch_size=16, shuffle=False, verbose=0)
    weights_before = None

    def remember(cb, batch):
        nonlocal weights_before
        weights_before = cb.model.get_weights()

    h = ae.fit(x, x, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[Hook(remember)])
    err = capsys.readouterr().err
    assert "TerminateOnNaN" in err and "epoch 1, batch 3" in err
    assert h.stopped_reason is not None and len(h.history.get("loss", [])) <= 1
    for a, b in zip(weights_before, ae.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert np.isfinite(b).all()


def test_ctrl_c_stops_after_the_current_batch_and_the_cut_epoch_does_not_count():
    ae, x = small_model()
    seen, ends = [], []

    class Ends(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(epoch)

    def interrupt(cb, batch):
        seen.append(batch)
        if len(seen) == 10:  # batch 1 of the second epoch (8 batches of 8 per epoch)
            signal.raise_signal(signal.SIGINT)

    h = ae.fit(x, x, epochs=5, batch_size=8, verbose=0, callbacks=[Hook(interrupt), Ends()])
    assert seen == [*range(8), 0, 1] and ends == [0]  # Keras calls no on_epoch_end for a cut epoch
    assert h.interrupted and len(h.history["loss"]) == 1 and h.epoch == [0]
    assert np.isfinite(ae.get_weights()[0]).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_early_stopping_restores_best_weights():
    ae, x = small_model()
    losses = iter([0.5, 0.4, 0.45, 0.47, 0.49, 0.3])
    snapshots = []

    class FakeVal(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)
            snapshots.append(self.model.get_weights())

    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = ae.fit(x, x, epochs=6, batch_size=16, verbose=0, callbacks=[FakeVal(), stop])
    assert len(h.epoch) == 4 and stop.stopped_epoch == 3
    for a, b in zip(snapshots[1], ae.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_best_only_and_csv_logger(tmp_path):
    ae, x = small_model()
    ckpt = callbacks.ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", monitor="loss", save_best_only=True)
    log = callbacks.CSVLogger(tmp_path / "log.csv")
    h = ae.fit(x, x, epochs=3, batch_size=16, verbose=0, callbacks=[ckpt, log], validation_data=(x, x))
    saved = sorted(p.name for p in tmp_path.glob("best-*.npz"))
    assert saved and saved[0] == "best-01.npz" and not list(tmp_path.glob(".tmp-*"))
    load_model(tmp_path / saved[-1])
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_loss" and len(lines) == 4
    assert float(lines[3].split(",")[1]) == pytest.approx(h.history["loss"][2])


def test_progress_bar_verbose_modes(capsys):
    ae, x = small_model()
    bar = callbacks.ProgbarLogger(verbose=2, epochs=2, steps=4, stream=io.StringIO())
    ae.fit(x, x, epochs=2, batch_size=16, verbose=0, callbacks=[bar])
    text = bar.stream.getvalue()
    assert text.count("Epoch ") == 2 and "4/4" in text and "loss:" in text
    ae.fit(x, x, epochs=1, batch_size=16, verbose=0)
    assert capsys.readouterr().out == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    live = callbacks.ProgbarLogger(verbose=1, epochs=1, steps=4, stream=Tty())
    ae.fit(x, x, epochs=1, batch_size=16, verbose=0, callbacks=[live])
    assert "\r" in live.stream.getvalue() and "ETA" not in live.stream.getvalue().splitlines()[-1]


def test_progress_keeps_a_slow_first_batch_out_of_the_eta_and_the_time_per_step(monkeypatch):
    # a first batch that waits 60 s for the compiler, then batches of 10 ms
    clock = iter([0.0] + [60.0 + 0.01 * i for i in range(500)])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))

    class Tty(io.StringIO):
        def isatty(self):
            return True

    bar = callbacks.ProgbarLogger(verbose=1, epochs=1, steps=400, stream=Tty())
    bar.on_epoch_begin(0)
    for b in range(400):
        bar.on_batch_end(b, {"loss": 0.5})
    bar.on_epoch_end(0, {"loss": 0.5})
    draws = bar.stream.getvalue().split("\r")
    etas = {int(d.split("/")[0]): float(d.split("ETA: ")[1].split("s")[0]) for d in draws if "ETA: " in d}
    # halfway, 200 batches of 10 ms are left: 2 s (an average over the epoch so far would say 62 s)
    halfway = min(etas, key=lambda done: abs(done - 200))
    assert 150 < halfway < 250 and etas[halfway] <= 3, etas
    assert "64s 10ms/step" in draws[-1], draws[-1]  # the epoch took 64 s; a step takes 10 ms


def read_event_scalars(path):
    """Parse a TensorBoard event file: TFRecord framing around Event protobufs."""
    from tensorboardX.proto import event_pb2

    out = {}
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_writes_real_event_files(tmp_path):
    pytest.importorskip("tensorboardX", reason="the test extra installs tensorboardX")
    ae, x = small_model()
    h = ae.fit(x, x, epochs=2, batch_size=16, verbose=0, validation_data=(x, x),
               callbacks=[callbacks.TensorBoard(log_dir=tmp_path)])
    train = read_event_scalars(next((tmp_path / "train").glob("events.out.tfevents.*")))
    val = read_event_scalars(next((tmp_path / "validation").glob("events.out.tfevents.*")))
    assert [s for s, _ in train["epoch_loss"]] == [0, 1]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], h.history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_loss"]], h.history["val_loss"], rtol=1e-6)


def test_tensorboard_without_the_extra_warns_once_and_writes_csv(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import now fails
    monkeypatch.setattr(callbacks.TensorBoard, "_warned", False)
    ae, x = small_model()
    with pytest.warns(UserWarning, match="tensorboardX is not installed"):
        ae.fit(x, x, epochs=2, batch_size=16, verbose=0, validation_data=(x, x),
               callbacks=[callbacks.TensorBoard(log_dir=tmp_path / "a")])
    lines = (tmp_path / "a" / "scalars.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_loss" and len(lines) == 3
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        ae.fit(x, x, epochs=1, batch_size=16, verbose=0, callbacks=[callbacks.TensorBoard(log_dir=tmp_path / "b")])


def test_tensorboard_takes_kerass_arguments_and_says_what_it_does_not_write(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callbacks.TensorBoard(tmp_path, 0, False, update_freq="epoch")  # Keras's order; defaults: silent
    with pytest.warns(UserWarning, match="histogram_freq=1 is not supported"):
        callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=1)
    with pytest.warns(UserWarning, match="update_freq='batch' is not supported"):
        callbacks.TensorBoard(log_dir=tmp_path, update_freq="batch")
    with pytest.warns(UserWarning, match="write_images=\\[1\\]"):
        callbacks.TensorBoard(log_dir=tmp_path, write_images=[1])  # (any value: no crash on comparing it)
    with pytest.raises(TypeError, match="unexpected keyword argument 'logdir'"):
        callbacks.TensorBoard(logdir=tmp_path)


def test_a_callback_that_stops_training_mid_epoch_still_ends_the_epoch_as_keras():
    # Keras breaks out of the batch loop, then validates and calls on_epoch_end (checkpoints,
    # CSV rows and History see the partial epoch); Ctrl-C and a diverging loss drop it instead
    x = np.random.default_rng(0).random((8, 784)).astype(np.float32)
    ae = autoencoders.vanilla(seed=0)[0]
    ended = []

    class StopAtFirstBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ae.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            ended.append((epoch, sorted(logs)))

    h = ae.fit(x, x, epochs=3, batch_size=2, verbose=0, validation_data=(x, x), callbacks=[StopAtFirstBatch()])
    assert ended == [(0, ["loss", "val_loss"])] and h.epoch == [0] and len(h.history["loss"]) == 1


# -- ReduceLROnPlateau ----------------------------------------------------------------------------

class FakeModel:
    """What ReduceLROnPlateau reads: ``model.optimizer.learning_rate``."""

    def __init__(self, lr):
        self.optimizer = type("Opt", (), {"learning_rate": lr})()


def schedule(cb, values, lr=1.0, key="val_loss"):
    """The learning rate logged at each epoch's end and the one left at the end, for a sequence of
    monitored values."""
    cb.set_model(FakeModel(lr))
    cb.on_train_begin()
    logged = []
    for epoch, v in enumerate(values):
        logs = {key: v}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    return logged, cb.model.optimizer.learning_rate


def test_reduce_lr_on_plateau_follows_kerass_rules():
    # patience 2: two epochs without improvement (by more than min_delta) -> rate * factor
    logged, lr = schedule(callbacks.ReduceLROnPlateau(factor=0.5, patience=2), [1.0, 0.9, 0.95, 0.92, 0.91, 0.85])
    assert logged == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5] and lr == 0.5
    # min_delta: 0.9 -> 0.89995 is no improvement; min_lr bounds the rate and stops the reductions
    logged, lr = schedule(callbacks.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=1e-4, min_lr=0.05),
                          [0.9, 0.89995, 0.9, 0.8, 0.81, 0.82])
    assert logged == [1.0, 1.0, 0.1, 0.05, 0.05, 0.05] and lr == 0.05
    # cooldown 2: the epoch after a reduction does not count; the next (its counter reaching 0) does
    logged, lr = schedule(callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2), [1.0, 1.0, 1.0, 1.0, 1.0])
    assert logged == [1.0, 1.0, 0.5, 0.5, 0.25] and lr == 0.25
    # mode: an accuracy goes up ("auto" knows npae's metrics), "max" for anything
    logged, lr = schedule(callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1),
                          [0.5, 0.6, 0.55, 0.7], key="val_accuracy")
    assert logged == [1.0, 1.0, 1.0, 0.5] and lr == 0.5
    assert schedule(callbacks.ReduceLROnPlateau(monitor="val_out_mae", patience=1), [1.0, 2.0],
                    key="val_out_mae")[1] == pytest.approx(0.1)
    assert schedule(callbacks.ReduceLROnPlateau(monitor="f1", mode="max", patience=1), [1.0, 2.0], key="f1")[1] == 1.0
    with pytest.raises(ValueError, match=r"cannot tell whether 'f1' should go down or up.*mode='min' or mode='max'"):
        schedule(callbacks.ReduceLROnPlateau(monitor="f1"), [1.0], key="f1")
    # NaN never improves
    assert schedule(callbacks.ReduceLROnPlateau(patience=1), [1.0, float("nan")])[1] == pytest.approx(0.1)


def test_reduce_lr_on_plateau_warns_when_the_monitored_value_is_missing(capsys):
    cb = callbacks.ReduceLROnPlateau(monitor="val_loss", patience=0, verbose=1)
    with pytest.warns(UserWarning, match=r"'val_loss' is not logged \(have \['learning_rate', 'loss'\]\)"):
        logged, lr = schedule(cb, [1.0, 1.0], key="loss")
    assert lr == 1.0 and capsys.readouterr().out == ""
    schedule(callbacks.ReduceLROnPlateau(monitor="loss", patience=1, verbose=1), [1.0, 1.0], key="loss")
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.1." in capsys.readouterr().out


@pytest.mark.parametrize("kwargs,match", [
    ({"factor": 1.0}, r"factor must be a finite number in \[0, 1\)"), ({"patience": -1}, "patience"),
    ({"mode": "up"}, "mode must be 'auto', 'min' or 'max'"), ({"cooldown": 1.5}, "cooldown"),
    ({"min_lr": -1.0}, "min_lr"), ({"monitor": ""}, "monitor must be the name"), ({"verbose": 3}, "verbose"),
])
def test_reduce_lr_on_plateau_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        callbacks.ReduceLROnPlateau(**kwargs)
    with pytest.raises(TypeError, match="epsilon"):
        callbacks.ReduceLROnPlateau(epsilon=1e-4)  # (Keras 2's name for min_delta: not silently ignored)


def linear_regression(jit, lr=0.05):
    from npae.layers import Dense, Input
    from npae.models import Model
    from npae.optimizers import SGD
    from npae.random import set_random_seed

    set_random_seed(3)
    inp = Input((5,))
    model = Model(inp, Dense(2)(inp))
    model.compile(SGD(lr, momentum=0.9), "mse", jit_compile=jit)
    return model.astype("float64")


@pytest.mark.parametrize("jit", [False, True])
def test_the_reduced_rate_takes_effect_at_the_next_batch(jit):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 2))
    # min_delta 10: no epoch improves, so with patience 1 the rate halves after epochs 2 and 3
    auto = linear_regression(jit)
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    h = auto.fit(x, y, epochs=4, batch_size=4, shuffle=False, verbose=0, callbacks=[cb])
    assert h.history["learning_rate"] == [0.05, 0.05, 0.025, 0.0125] and auto.optimizer.learning_rate == 0.00625
    by_hand = linear_regression(jit)
    for lr, epochs in ((0.05, 2), (0.025, 1), (0.0125, 1)):
        by_hand.optimizer.learning_rate = lr
        by_hand.fit(x, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(auto.get_weights(), by_hand.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # and a rate changed between two batches of an epoch holds from the next batch
    halving = linear_regression(jit)

    class Halve(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.optimizer.learning_rate /= 2

    halving.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[Halve()])
    by_hand = linear_regression(jit)
    for k in range(3):
        by_hand.train_on_batch(x[4 * k:4 * k + 4], y[4 * k:4 * k + 4])
        by_hand.optimizer.learning_rate /= 2
    for a, b in zip(halving.get_weights(), by_hand.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert not np.allclose(halving.get_weights()[0], auto.get_weights()[0])


def test_history_records_what_the_users_callbacks_add_to_the_logs_as_keras():
    ae, x = small_model()
    h = ae.fit(x, x, epochs=2, batch_size=32, verbose=0, callbacks=[callbacks.ReduceLROnPlateau(monitor="loss")])
    assert sorted(h.history) == ["learning_rate", "loss"]
    assert h.history["learning_rate"] == [ae.optimizer.learning_rate] * 2

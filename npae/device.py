"""``npae.device(name)``: Keras 3's ``keras.device`` context manager, for code written for Keras.

npae runs on the CPU, always: the reference path in NumPy, the fast path in Numba's CPU kernels.
So placing work on the CPU is what happens anyway, and every spelling of the CPU that Keras's
backends take is accepted, as a context that changes nothing:

    "cpu", "cpu:0"                   (Keras's own form, as JAX and PyTorch read it)
    "/cpu:0", "/device:cpu:0"        (TensorFlow's forms)

in any case ("CPU:0", "/device:CPU:0"). A GPU, or any other device, is a ValueError that says npae
runs on the CPU: code that asks for a GPU should not run on without one unnoticed.

    with npae.device("cpu:0"):
        model.fit(x, y)
"""

from __future__ import annotations

import contextlib
import re

__all__ = ["device"]

_CPU = re.compile(r"/?(device:)?cpu(:0)?", re.IGNORECASE)


def device(device_name: str) -> contextlib.AbstractContextManager[str]:
    """A context manager for ``with npae.device("cpu:0"):``, which changes nothing (npae always
    runs on the CPU); entering it gives the canonical name, "cpu:0".

    Parameters
    ----------
    device_name : a CPU as Keras names it: "cpu", "cpu:0", "/CPU:0", "/device:CPU:0", any case.

    Raises
    ------
    ValueError : for any other device (a GPU, a TPU, a second CPU), or a name that is not a string.
    """
    if not isinstance(device_name, str):
        raise ValueError(f"npae.device: expected a device name such as 'cpu:0', got {device_name!r}")
    if _CPU.fullmatch(device_name) is None:
        if re.fullmatch(r"/?(device:)?cpu:\d+", device_name, re.IGNORECASE):
            raise ValueError(f"npae.device: npae runs on one CPU device, cpu:0 (its kernels use every core), got "
                             f"{device_name!r}")
        raise ValueError(f"npae.device: npae runs on the CPU only (NumPy and Numba's CPU kernels), so it cannot place "
                         f"work on {device_name!r}; use 'cpu' or 'cpu:0', or leave the device out")
    return contextlib.nullcontext("cpu:0")

"""A convolutional denoising autoencoder as they are written today: the noise is a layer
(GaussianNoise, active in training only), strided convolutions shrink the image, batch
normalisation steadies training, and Conv2DTranspose layers learn the way back up.

    28x28x1 -> noise -> conv 32 /2 -> conv 64 /2 -> (7, 7, 64) -> conv^T 64 x2 -> conv^T 32 x2 -> 28x28x1

The figure shows test images, the same images with noise of the strength trained on, and the
model's reconstructions of the noisy ones.
"""

import matplotlib.pyplot as plt
import numpy as np
from common import load, parse_args

from npae.layers import BatchNormalization, Conv2D, Conv2DTranspose, GaussianNoise, Input, ReLU
from npae.models import Model

args = parse_args("denoising autoencoder with Conv2DTranspose", epochs=20)
x_train, x_test, _ = load(args, images=True)
noise = 0.3


def down(x, filters):
    x = Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)  # the norm's beta is the bias
    return ReLU()(BatchNormalization()(x))


def up(x, filters):
    x = Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False)(x)
    return ReLU()(BatchNormalization()(x))


inputs = Input(shape=(28, 28, 1))
x = GaussianNoise(noise)(inputs)  # x + N(0, noise^2) while training; the identity at inference
encoded = down(down(x, 32), 64)  # (7, 7, 64)
decoded = Conv2D(1, 3, padding="same", activation="sigmoid")(up(up(encoded, 64), 32))

autoencoder = Model(inputs, decoded)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy", metrics=["mae"])
autoencoder.summary()
history = autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=128, shuffle=True,
                          validation_data=(x_test, x_test))

rng = np.random.default_rng(0)
noisy = (x_test[:10] + noise * rng.standard_normal(x_test[:10].shape)).astype("float32")  # as in training
denoised = autoencoder.predict(noisy, verbose=0)
loss, mae = autoencoder.evaluate(noisy, x_test[:10], verbose=0)
print(f"on 10 noisy test images: loss {loss:.4f}, mean absolute error {mae:.4f}")

fig, axes = plt.subplots(3, 10, figsize=(15, 5))
for row, (images, label) in enumerate([(x_test, "clean"), (noisy, f"noisy (+{noise} N(0, 1))"),
                                       (denoised, "denoised")]):
    for i in range(10):
        axes[row, i].imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[row, i].set_xticks([])
        axes[row, i].set_yticks([])
    axes[row, 0].set_ylabel(label)
fig.suptitle(f"Denoising with Conv2DTranspose and BatchNormalization ({args.dataset}, {args.epochs} epochs, "
             f"val_mae {history.history['val_mae'][-1]:.3f})")
fig.tight_layout()
fig.savefig(f"{args.out}/transposed_denoising_autoencoder.png", bbox_inches="tight")

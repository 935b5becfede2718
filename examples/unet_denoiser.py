"""A U-Net-style denoiser: a graph, not a chain. The encoder's features skip across to the
decoder: at 14x14 they are *added* to the upsampled code (Add), at 28x28 *concatenated* with it
(Concatenate), so the decoder sees the fine detail the code had to drop.

    28x28 -> conv 32 ------------------------------------------------+ concatenate -> conv 32 -> sigmoid
               \\ pool -> 14x14 conv 64 --------------+ add -> conv 64 -> conv^T 32 (x2) --'
                         \\ pool -> 7x7 conv 64 -> conv^T 64 (x2) --'

Trained as the tutorial's denoiser: noisy images in (x + 0.5 N(0, 1), clipped), clean images out.
The figure shows clean, noisy and denoised test images.
"""

import matplotlib.pyplot as plt
import numpy as np
from common import load, parse_args

from npae.layers import Add, Concatenate, Conv2D, Conv2DTranspose, Input, MaxPooling2D
from npae.models import Model

args = parse_args("U-Net-style denoiser (Add and Concatenate skips)", epochs=10)
x_train, x_test, _ = load(args, images=True)

noise_factor = 0.5
rng = np.random.default_rng(0)
x_train_noisy = np.clip(x_train + noise_factor * rng.normal(size=x_train.shape), 0.0, 1.0).astype("float32")
x_test_noisy = np.clip(x_test + noise_factor * rng.normal(size=x_test.shape), 0.0, 1.0).astype("float32")

inputs = Input(shape=(28, 28, 1))
c1 = Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
c2 = Conv2D(64, (3, 3), activation="relu", padding="same")(MaxPooling2D((2, 2))(c1))
code = Conv2D(64, (3, 3), activation="relu", padding="same")(MaxPooling2D((2, 2))(c2))
up2 = Conv2DTranspose(64, (3, 3), strides=2, activation="relu", padding="same")(code)
d2 = Conv2D(64, (3, 3), activation="relu", padding="same")(Add()([up2, c2]))
up1 = Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(d2)
d1 = Conv2D(32, (3, 3), activation="relu", padding="same")(Concatenate()([up1, c1]))
outputs = Conv2D(1, (3, 3), activation="sigmoid", padding="same")(d1)

unet = Model(inputs, outputs)
unet.compile(optimizer="adam", loss="binary_crossentropy")
unet.summary()
history = unet.fit(x_train_noisy, x_train, epochs=args.epochs, batch_size=128, shuffle=True,
                   validation_data=(x_test_noisy, x_test))

denoised = unet.predict(x_test_noisy[:10], verbose=0)
fig, axes = plt.subplots(3, 10, figsize=(15, 5))
for row, (images, label) in enumerate([(x_test, "clean"), (x_test_noisy, "noisy"), (denoised, "denoised")]):
    for i in range(10):
        axes[row, i].imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[row, i].set_xticks([])
        axes[row, i].set_yticks([])
    axes[row, 0].set_ylabel(label)
fig.suptitle(f"U-Net denoiser ({args.dataset}, {args.epochs} epochs, val_loss {history.history['val_loss'][-1]:.4f})")
fig.tight_layout()
fig.savefig(f"{args.out}/unet_denoiser.png", bbox_inches="tight")

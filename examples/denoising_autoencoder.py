"""The tutorial's denoising autoencoder: noisy digits in, clean digits out; a three-row figure."""

import matplotlib.pyplot as plt
import numpy as np
from common import load, parse_args

from npae.layers import Conv2D, Input, MaxPooling2D, UpSampling2D
from npae.models import Model

args = parse_args("denoising autoencoder", epochs=100)
x_train, x_test, _ = load(args, images=True)

noise_factor = 0.5
rng = np.random.default_rng(0)
x_train_noisy = x_train + noise_factor * rng.normal(loc=0.0, scale=1.0, size=x_train.shape)
x_test_noisy = x_test + noise_factor * rng.normal(loc=0.0, scale=1.0, size=x_test.shape)
x_train_noisy = np.clip(x_train_noisy, 0.0, 1.0).astype("float32")
x_test_noisy = np.clip(x_test_noisy, 0.0, 1.0).astype("float32")

input_img = Input(shape=(28, 28, 1))
x = Conv2D(32, (3, 3), activation="relu", padding="same")(input_img)
x = MaxPooling2D((2, 2), padding="same")(x)
x = Conv2D(32, (3, 3), activation="relu", padding="same")(x)
encoded = MaxPooling2D((2, 2), padding="same")(x)
# at this point the representation is (7, 7, 32)

x = Conv2D(32, (3, 3), activation="relu", padding="same")(encoded)
x = UpSampling2D((2, 2))(x)
x = Conv2D(32, (3, 3), activation="relu", padding="same")(x)
x = UpSampling2D((2, 2))(x)
decoded = Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

autoencoder = Model(input_img, decoded)
autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")
autoencoder.fit(x_train_noisy, x_train, epochs=args.epochs, batch_size=128, shuffle=True,
                validation_data=(x_test_noisy, x_test))

denoised = autoencoder.predict(x_test_noisy[:10])
n = 10
plt.figure(figsize=(20, 6))
for row, images in enumerate([x_test, x_test_noisy, denoised]):
    for i in range(n):
        ax = plt.subplot(3, n, row * n + i + 1)
        plt.imshow(images[i].reshape(28, 28), cmap="gray")
        ax.axis("off")
plt.suptitle(f"Denoising autoencoder: clean test images, the noisy inputs, the denoised outputs\n"
             f"({args.dataset}, {args.epochs} epochs)")
plt.tight_layout()
plt.savefig(f"{args.out}/denoising_autoencoder.png", bbox_inches="tight")

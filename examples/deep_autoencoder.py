"""The tutorial's deep autoencoder, as the symmetric model its text describes.

The published code connects the final Dense(784) to the 64-unit layer, bypassing the decoder it
just built; here the last layer takes the 128-unit decoder layer, as intended.
"""

import matplotlib.pyplot as plt
from common import load, parse_args

from npae.layers import Dense, Input
from npae.models import Model

args = parse_args("deep 784-128-64-32-64-128-784 autoencoder", epochs=100)

input_img = Input(shape=(784,))
encoded = Dense(128, activation="relu")(input_img)
encoded = Dense(64, activation="relu")(encoded)
encoded = Dense(32, activation="relu")(encoded)

decoded = Dense(64, activation="relu")(encoded)
decoded = Dense(128, activation="relu")(decoded)
decoded = Dense(784, activation="sigmoid")(decoded)

autoencoder = Model(input_img, decoded)
autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")

x_train, x_test, _ = load(args)
autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=256, shuffle=True,
                validation_data=(x_test, x_test))

decoded_imgs = autoencoder.predict(x_test)
n = 10
plt.figure(figsize=(20, 4))
for i in range(n):
    ax = plt.subplot(2, n, i + 1)
    plt.imshow(x_test[i].reshape(28, 28), cmap="gray")
    ax.axis("off")
    ax = plt.subplot(2, n, i + 1 + n)
    plt.imshow(decoded_imgs[i].reshape(28, 28), cmap="gray")
    ax.axis("off")
plt.suptitle(f"Deep autoencoder: test images (top) and their reconstructions (bottom)\n"
             f"({args.dataset}, {args.epochs} epochs)")
plt.tight_layout()
plt.savefig(f"{args.out}/deep_autoencoder.png", bbox_inches="tight")

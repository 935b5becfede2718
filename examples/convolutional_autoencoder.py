"""The tutorial's convolutional autoencoder, with its TensorBoard callback."""

import matplotlib.pyplot as plt
from common import load, parse_args

from npae.callbacks import TensorBoard
from npae.layers import Conv2D, Input, MaxPooling2D, UpSampling2D
from npae.models import Model

args = parse_args("convolutional autoencoder", epochs=50)

input_img = Input(shape=(28, 28, 1))  # channels-last, as in the tutorial

x = Conv2D(16, (3, 3), activation="relu", padding="same")(input_img)
x = MaxPooling2D((2, 2), padding="same")(x)
x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
x = MaxPooling2D((2, 2), padding="same")(x)
x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
encoded = MaxPooling2D((2, 2), padding="same")(x)
# at this point the representation is (4, 4, 8), i.e. 128-dimensional

x = Conv2D(8, (3, 3), activation="relu", padding="same")(encoded)
x = UpSampling2D((2, 2))(x)
x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
x = UpSampling2D((2, 2))(x)
x = Conv2D(16, (3, 3), activation="relu")(x)
x = UpSampling2D((2, 2))(x)
decoded = Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

autoencoder = Model(input_img, decoded)
autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")

x_train, x_test, _ = load(args, images=True)
autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=128, shuffle=True,
                validation_data=(x_test, x_test), callbacks=[TensorBoard(log_dir=f"{args.out}/autoencoder_logs")])

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
plt.suptitle(f"Convolutional autoencoder: test images (top) and their reconstructions (bottom)\n"
             f"({args.dataset}, {args.epochs} epochs)")
plt.tight_layout()
plt.savefig(f"{args.out}/convolutional_autoencoder.png", bbox_inches="tight")

"""The tutorial's first program: a single fully connected layer as encoder and as decoder."""

import matplotlib.pyplot as plt
from common import load, parse_args

from npae.layers import Dense, Input
from npae.models import Model

args = parse_args("simple 32-d autoencoder", epochs=50)
encoding_dim = 32  # 32 floats -> compression factor 24.5, assuming the input is 784 floats

input_img = Input(shape=(784,))
encoded = Dense(encoding_dim, activation="relu")(input_img)
decoded = Dense(784, activation="sigmoid")(encoded)
autoencoder = Model(input_img, decoded)

encoder = Model(input_img, encoded)
encoded_input = Input(shape=(encoding_dim,))
decoder_layer = autoencoder.layers[-1]
decoder = Model(encoded_input, decoder_layer(encoded_input))

autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")
x_train, x_test, _ = load(args)
autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=256, shuffle=True,
                validation_data=(x_test, x_test))

encoded_imgs = encoder.predict(x_test)
decoded_imgs = decoder.predict(encoded_imgs)

n = 10
plt.figure(figsize=(20, 4))
for i in range(n):
    ax = plt.subplot(2, n, i + 1)
    plt.imshow(x_test[i].reshape(28, 28))
    plt.gray()
    ax.get_xaxis().set_visible(False)
    ax.get_yaxis().set_visible(False)
    ax = plt.subplot(2, n, i + 1 + n)
    plt.imshow(decoded_imgs[i].reshape(28, 28))
    plt.gray()
    ax.get_xaxis().set_visible(False)
    ax.get_yaxis().set_visible(False)
plt.suptitle(f"Simple autoencoder (32-d code): test images (top) and their reconstructions (bottom)\n"
             f"({args.dataset}, {args.epochs} epochs)")
plt.tight_layout()
plt.savefig(f"{args.out}/simple_autoencoder.png", bbox_inches="tight")

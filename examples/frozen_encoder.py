"""Transfer an encoder: train a convolutional autoencoder, freeze its encoder, and train a new,
different decoder under it (Keras's ``encoder.trainable = False``).

The frozen encoder takes no update and runs forward only (the backward pass stops at the new
decoder), so its codes stay exactly what they were; the new decoder (Conv2DTranspose layers
instead of upsampling) learns to read them. The figure compares the two decoders' reconstructions.
"""

import matplotlib.pyplot as plt
import numpy as np
from common import load, parse_args

from npae.layers import Conv2D, Conv2DTranspose, Input, MaxPooling2D, UpSampling2D
from npae.models import Model

args = parse_args("a frozen encoder under a new decoder", epochs=5)
x_train, x_test, _ = load(args, images=True)

# 1. an autoencoder, trained as usual
inputs = Input(shape=(28, 28, 1))
x = Conv2D(16, 3, activation="relu", padding="same")(inputs)
x = MaxPooling2D(2, padding="same")(x)
x = Conv2D(8, 3, activation="relu", padding="same")(x)
code = MaxPooling2D(2, padding="same")(x)  # (7, 7, 8)
x = UpSampling2D(2)(Conv2D(8, 3, activation="relu", padding="same")(code))
x = UpSampling2D(2)(Conv2D(16, 3, activation="relu", padding="same")(x))
first = Model(inputs, Conv2D(1, 3, activation="sigmoid", padding="same")(x), name="first_autoencoder")
first.compile(optimizer="adam", loss="binary_crossentropy")
first.fit(x_train, x_train, epochs=args.epochs, batch_size=128, validation_data=(x_test, x_test))

# 2. its encoder, frozen: a model over the same layer objects
encoder = Model(inputs, code, name="encoder")
encoder.trainable = False
codes_before = encoder.predict(x_test[:100], verbose=0)
weights_before = [w.copy() for w in encoder.get_weights()]

# 3. a new decoder on the frozen codes, trained end to end from the images
x = Conv2DTranspose(16, 3, strides=2, activation="relu", padding="same")(code)
x = Conv2DTranspose(16, 3, strides=2, activation="relu", padding="same")(x)
second = Model(inputs, Conv2D(1, 3, activation="sigmoid", padding="same")(x), name="new_decoder")
second.compile(optimizer="adam", loss="binary_crossentropy")
second.summary()  # the encoder's weights are counted as non-trainable
second.fit(x_train, x_train, epochs=args.epochs, batch_size=128, validation_data=(x_test, x_test))

unchanged = all(np.array_equal(a, b) for a, b in zip(weights_before, encoder.get_weights()))
same_codes = np.array_equal(codes_before, encoder.predict(x_test[:100], verbose=0))
print(f"encoder weights unchanged: {unchanged}; codes unchanged: {same_codes}")
print(f"validation loss: first decoder {first.evaluate(x_test, x_test, verbose=0):.4f}, "
      f"new decoder on the frozen codes {second.evaluate(x_test, x_test, verbose=0):.4f}")
if not (unchanged and same_codes):
    raise SystemExit("the frozen encoder changed")

rows = [x_test[:10], first.predict(x_test[:10], verbose=0), second.predict(x_test[:10], verbose=0)]
fig, axes = plt.subplots(3, 10, figsize=(15, 5))
for r, (images, label) in enumerate(zip(rows, ["input", "first decoder", "new decoder\n(frozen encoder)"])):
    for i in range(10):
        axes[r, i].imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[r, i].set_xticks([])
        axes[r, i].set_yticks([])
    axes[r, 0].set_ylabel(label)
fig.suptitle(f"One frozen encoder, two decoders ({args.dataset}, {args.epochs} epochs each)")
fig.tight_layout()
fig.savefig(f"{args.out}/frozen_encoder.png", bbox_inches="tight")

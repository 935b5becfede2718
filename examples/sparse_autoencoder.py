"""The tutorial's sparse autoencoder: an L1 activity penalty on the code, compared with none.

The figure is a histogram of each test image's mean code activation, with and without the penalty:
the penalty pushes the codes towards zero (the tutorial reports means of ~3.33 vs ~7.30).
"""

from common import load, parse_args

from npae import regularizers
from npae.layers import Dense, Input
from npae.models import Model
from npae.plots import plot_histograms

args = parse_args("sparse (L1) autoencoder", epochs=100)
x_train, x_test, _ = load(args)
encoding_dim = 32


def build(activity_regularizer):
    input_img = Input(shape=(784,))
    # the tutorial's l1(10e-5) is 1e-4
    encoded = Dense(encoding_dim, activation="relu", activity_regularizer=activity_regularizer)(input_img)
    decoded = Dense(784, activation="sigmoid")(encoded)
    autoencoder, encoder = Model(input_img, decoded), Model(input_img, encoded)
    autoencoder.compile(optimizer="adadelta", loss="binary_crossentropy")
    autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=256, shuffle=True,
                    validation_data=(x_test, x_test), seed=0)
    return encoder.predict(x_test).mean(axis=1)


means = {"with l1(10e-5)": build(regularizers.l1(10e-5)), "without penalty": build(None)}
for label, m in means.items():
    print(f"mean code activation {label}: {m.mean():.3f}")
plot_histograms(means, f"{args.out}/sparse_code_activations.png")

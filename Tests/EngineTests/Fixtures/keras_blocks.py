"""Keras building blocks shared by the golden scripts (make_goldens.py, make_gradcam_goldens.py):
the qubvel efficientnet 1.1.1 MBConv block, Keras-to-engine weight names, the classifier of SPEC §3,
and the safetensors writer."""
import json

import numpy as np
import keras
from keras import layers

CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def mbconv(x, name, cin, cout, expand, k, stride):
    """qubvel efficientnet 1.1.1 mb_conv_block (drop-connect off)."""
    filters = cin * expand
    h = x
    if expand != 1:
        h = layers.Conv2D(filters, 1, padding="same", use_bias=False, kernel_initializer=CONV_INIT, name=name + "_expand_conv")(h)
        h = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name + "_expand_bn")(h)
        h = layers.Activation("swish", name=name + "_expand_activation")(h)
    h = layers.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, depthwise_initializer=CONV_INIT, name=name + "_dwconv")(h)
    h = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name + "_bn")(h)
    h = layers.Activation("swish", name=name + "_activation")(h)
    reduced = max(1, int(cin * 0.25))
    se = layers.GlobalAveragePooling2D(name=name + "_se_squeeze")(h)
    se = layers.Reshape((1, 1, filters), name=name + "_se_reshape")(se)
    se = layers.Conv2D(reduced, 1, activation="swish", padding="same", use_bias=True, kernel_initializer=CONV_INIT, name=name + "_se_reduce")(se)
    se = layers.Conv2D(filters, 1, activation="sigmoid", padding="same", use_bias=True, kernel_initializer=CONV_INIT, name=name + "_se_expand")(se)
    h = layers.multiply([h, se], name=name + "_se_excite")
    h = layers.Conv2D(cout, 1, padding="same", use_bias=False, kernel_initializer=CONV_INIT, name=name + "_project_conv")(h)
    h = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name + "_project_bn")(h)
    if stride == 1 and cin == cout:
        h = layers.add([h, x], name=name + "_add")
    return h


def keras_weights(model):
    """Our names: '<layer>/<weight>' with Keras 2 weight names."""
    named = {}
    for layer in model.layers:
        for w in layer.weights:
            short = w.path.split("/")[-1]
            if isinstance(layer, layers.DepthwiseConv2D) and short == "kernel":
                short = "depthwise_kernel"  # Keras 2's name, which the engine uses
            named[f"{layer.name}/{short}"] = w
    return named


STAGES = [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1)]


def classifier(size):
    """B0 to block5c_add, ZeroPadding2D, extra_conv_eff0 (ReLU), GAP, predictions (softmax)."""
    cin_ = keras.Input((size, size, 3))
    h = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, kernel_initializer=CONV_INIT, name="stem_conv")(cin_)
    h = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name="stem_bn")(h)
    h = layers.Activation("swish", name="stem_activation")(h)
    for s, (k, reps, cin, cout, e, stride) in enumerate(STAGES):
        for r in range(reps):
            h = mbconv(h, f"block{s + 1}{chr(97 + r)}", cin if r == 0 else cout, cout, e, k, stride if r == 0 else 1)
    h = layers.ZeroPadding2D(name="zero_padding")(h)
    h = layers.Conv2D(512, 3, padding="valid", activation="relu", name="extra_conv_eff0")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    h = layers.Dense(3, activation="softmax", name="predictions")(h)
    return keras.Model(cin_, h)


def save(path, tensors, metadata):
    names = sorted(tensors)
    header, offset = {}, 0
    for n in names:
        a = np.ascontiguousarray(tensors[n], dtype="<f4")
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - (8 + len(raw)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for n in names:
            f.write(np.ascontiguousarray(tensors[n], dtype="<f4").tobytes())

"""Golden values for EngineTests from TensorFlow/Keras. Run once, by hand, in a throw-away
environment; the tests read only the .safetensors files written here and never need Python.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu numpy
    /tmp/tf/bin/python make_goldens.py

Writes ops.safetensors (inputs, outputs and gradients of conv, depthwise conv, batch norm and an
MBConv block; the loss is sum(r * y) for a stored random r) and classifier.safetensors (initial
weights of the classifier of SPEC §3 at a 64x64 input with Keras layer names, a fixed batch, and
the CCE losses of three Keras SGD steps). The EfficientNet-B0 blocks are built here from the
qubvel efficientnet 1.1.1 recipe; drop-connect is off so the steps are deterministic.
Versions are stored in each file's metadata."""
import json
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import keras
from keras import layers

import keras_blocks
from keras_blocks import keras_weights, mbconv, save

rng = np.random.default_rng(7)
out = {}
meta = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def rand(*shape, scale=1.0):
    return (rng.uniform(-1, 1, shape) * scale).astype(np.float32)


def record(prefix, layer, x, weights):
    """Forward in training mode, then d sum(r*y) / d(x, weights)."""
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv, training=True)
        r = rand(*y.shape)
        loss = tf.reduce_sum(y * r)
    grads = tape.gradient(loss, [xv] + [w for _, w in weights])
    out[prefix + "/x"] = x
    out[prefix + "/y"] = y.numpy()
    out[prefix + "/r"] = r
    out[prefix + "/dx"] = grads[0].numpy()
    for (name, w), g in zip(weights, grads[1:]):
        out[prefix + "/" + name] = w.numpy()
        out[prefix + "/d" + name] = g.numpy()


x = rand(2, 7, 6, 3)
for k, s, pad in [(3, 1, "same"), (3, 2, "same"), (5, 2, "same"), (3, 1, "valid"), (1, 2, "same")]:
    conv = layers.Conv2D(4, k, strides=s, padding=pad, use_bias=True, bias_initializer="glorot_uniform")
    conv.build(x.shape)
    record(f"conv{k}s{s}{pad}", conv, x, [("kernel", conv.kernel), ("bias", conv.bias)])

for k, s in [(3, 1), (5, 2)]:
    dw = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False)
    dw.build(x.shape)
    record(f"dw{k}s{s}", dw, x, [("depthwise_kernel", dw.kernel)])

xb = rand(2, 5, 5, 4, scale=2.0)
bn = layers.BatchNormalization(momentum=0.99, epsilon=1e-3)
bn.build(xb.shape)
bn.gamma.assign(rand(4) + 1.5)
bn.beta.assign(rand(4))
record("bn", bn, xb, [("gamma", bn.gamma), ("beta", bn.beta)])
out["bn/moving_mean_after"] = bn.moving_mean.numpy()
out["bn/moving_variance_after"] = bn.moving_variance.numpy()

xm = rand(2, 6, 6, 8)
inp = keras.Input((6, 6, 8))
block = keras.Model(inp, mbconv(inp, "blk", 8, 8, 6, 3, 1))
# Non-trivial batch-norm parameters, so the golden exercises them.
for name, w in keras_weights(block).items():
    if name.endswith("/gamma"):
        w.assign(rand(*w.shape) * 0.5 + 1.0)
    if name.endswith("/beta"):
        w.assign(rand(*w.shape) * 0.3)
weights = sorted(keras_weights(block).items())
trainable = [(n, w) for n, w in weights if "moving" not in n]
record("mbconv", block, xm, trainable)
for n, w in weights:
    if "moving" in n:
        out["mbconv/" + n] = w.numpy()

# The classifier: B0 to block5c_add, ZeroPadding2D, extra_conv_eff0, GAP, predictions.
classifier = keras_blocks.classifier(64)
cls = {"__x": rng.uniform(0, 1, (4, 64, 64, 3)).astype(np.float32),
       "__y": np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]}
for name, w in keras_weights(classifier).items():
    cls[name] = w.numpy()
opt = keras.optimizers.SGD(learning_rate=keras.optimizers.schedules.InverseTimeDecay(1e-3, 1, 1e-6), momentum=0.9, nesterov=True)
losses = []
cce = keras.losses.CategoricalCrossentropy()
for step in range(3):
    with tf.GradientTape() as tape:
        p = classifier(cls["__x"], training=True)
        loss = cce(cls["__y"], p)
    grads = tape.gradient(loss, classifier.trainable_weights)
    opt.apply_gradients(zip(grads, classifier.trainable_weights))
    losses.append(float(loss))
cls["__losses"] = np.array(losses, dtype=np.float32)


save("ops.safetensors", out, meta)
save("classifier.safetensors", cls, meta)
print("losses", losses)

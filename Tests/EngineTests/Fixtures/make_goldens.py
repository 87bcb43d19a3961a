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
STAGES = [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1)]
cin_ = keras.Input((64, 64, 3))
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
classifier = keras.Model(cin_, h)
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


save("ops.safetensors", out, meta)
save("classifier.safetensors", cls, meta)
print("losses", losses)

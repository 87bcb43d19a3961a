"""Grad-CAM goldens for EngineTests from TensorFlow/Keras (GradientTape). Run once, by hand, in a
throw-away environment, after make_goldens.py; the tests read only gradcam.safetensors.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu numpy
    /tmp/tf/bin/python make_gradcam_goldens.py

Loads the committed classifier.safetensors (the SPEC §3 classifier at 64x64 with its initial
weights and batch __x), and for each image computes, in inference mode, at extra_conv_eff0 (after its
ReLU) and for the predicted class (and, as __gradcam_truth and __gradcam_paper_truth, for the
label in __y, which exercises the other classes):
  __gradcam        Grad-CAM of the class score before the softmax: alpha_c = mean_hw dScore/dA,
                   map = ReLU(sum_c alpha_c A_c)
  __gradcam_paper  the released code's: the gradient of the softmax probability, alpha_c = mean_hw,
                   map = ReLU(mean_c alpha_c A_c) / max (1e-10 when the max is 0)
  __gradcam_class  the predicted class of each image."""
import json
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import keras

from keras_blocks import classifier, keras_weights, save


def load(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
    return out


fixture = load("classifier.safetensors")
model = classifier(64)
for name, w in keras_weights(model).items():
    w.assign(fixture[name])
x = fixture["__x"]
dcl = model.get_layer("extra_conv_eff0").output
logits_model = keras.Model(model.inputs, [dcl, model.get_layer("predictions").output])
# The score before the softmax: the Dense's logits, recomputed from the GAP output.
dense = model.get_layer("predictions")



def cams(xi, choose):
    with tf.GradientTape(persistent=True) as tape:
        a, p = logits_model(xi, training=False)
        tape.watch(a)
        logit = tf.matmul(tf.reduce_mean(a, axis=(1, 2)), dense.kernel) + dense.bias
        prob = tf.nn.softmax(logit)
        c = choose(p.numpy()[0])
        score, probability = logit[0, c], prob[0, c]
    g = tape.gradient(score, a).numpy()[0]
    gp = tape.gradient(probability, a).numpy()[0]
    av = a.numpy()[0]
    alpha = g.mean(axis=(0, 1))
    alpha_p = gp.mean(axis=(0, 1))
    h = np.maximum((av * alpha_p).mean(-1), 0)
    return np.maximum((av * alpha).sum(-1), 0), h / (h.max() if h.max() > 0 else 1e-10), c


maps, paper, classes, truth_maps, truth_paper = [], [], [], [], []
for i in range(x.shape[0]):
    m, h, c = cams(x[i:i + 1], lambda p: int(np.argmax(p)))
    maps.append(m)
    paper.append(h)
    classes.append(c)
    m, h, _ = cams(x[i:i + 1], lambda p: int(np.argmax(fixture["__y"][i])))
    truth_maps.append(m)
    truth_paper.append(h)

meta = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}
save("gradcam.safetensors", {"__gradcam": np.stack(maps), "__gradcam_paper": np.stack(paper),
                             "__gradcam_class": np.array(classes, dtype=np.float32),
                             "__gradcam_truth": np.stack(truth_maps), "__gradcam_paper_truth": np.stack(truth_paper)}, meta)
print("classes", classes, "max", [float(m.max()) for m in maps])

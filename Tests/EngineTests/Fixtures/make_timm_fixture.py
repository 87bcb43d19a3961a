"""timm golden for the EfficientNet-B0 weight import (docs/WEIGHTS.md). Run once, by hand, in a
throw-away environment; the tests read only timm_b0.safetensors.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch timm safetensors numpy
    swift build -c release && .build/release/import-weights export-timm --seed 1 --out /tmp/timm_random.safetensors
    /tmp/peers/bin/python Tests/EngineTests/Fixtures/make_timm_fixture.py /tmp/timm_random.safetensors

Loads the engine's seeded random encoder (timm names and layouts, as `import-weights export-timm`
writes it) into timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0) — every
tensor but batch norm's num_batches_tracked must be there, nothing else — and runs one seeded
random image (1x3x72x72: 72 is not a multiple of 32, so the TF "same" padding's odd sizes are
exercised) in eval mode (batch norm on its running statistics). Writes, in NHWC:
  input              the image
  block2b_add        output of blocks.1.1   (Keras names of the residual adds)
  block4c_add        output of blocks.3.2
  block5c_add        output of blocks.4.2   (where the classifier's encoder ends)
  block6d_add        output of blocks.5.3
  top_activation     SiLU(bn2(conv_head(...)))
and in the metadata the versions of torch and timm."""
import sys

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file

weights = load_file(sys.argv[1])
model = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0)
result = model.load_state_dict(weights, strict=False)
assert not result.unexpected_keys, result.unexpected_keys
assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result.missing_keys
model.eval()

taps = {"block2b_add": model.blocks[1][1], "block4c_add": model.blocks[3][2],
        "block5c_add": model.blocks[4][2], "block6d_add": model.blocks[5][3]}
captured = {}
for name, module in taps.items():
    module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))

x = np.random.default_rng(2026).uniform(-1, 1, size=(1, 3, 72, 72)).astype(np.float32)
with torch.no_grad():
    features = model.forward_features(torch.from_numpy(x))  # conv_head, bn2 (with its SiLU)
captured["top_activation"] = features

out = {"input": torch.from_numpy(x.transpose(0, 2, 3, 1).copy())}
for name, value in captured.items():
    out[name] = value.permute(0, 2, 3, 1).contiguous()
save_file(out, __file__.rsplit("/", 1)[0] + "/timm_b0.safetensors" if "/" in __file__ else "timm_b0.safetensors", metadata={"torch": torch.__version__, "timm": timm.__version__})
print({k: tuple(v.shape) for k, v in out.items()})

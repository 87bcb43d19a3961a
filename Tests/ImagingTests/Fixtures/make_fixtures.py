"""Generates the image-decoding and resize fixtures of ImagingTests. Run once, by hand, in a
throw-away environment; the tests read only its outputs and never need Python.

    python3 -m venv /tmp/gold && /tmp/gold/bin/pip install opencv-python-headless pillow numpy
    /tmp/gold/bin/python make_fixtures.py

Versions used for the committed files are written into expected.json ("versions").
Gray expectations use ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) in float64, with R = G = B
kept exactly; alpha is ignored. Resize expectations come from cv2.resize on float32 input (float
arithmetic, no fixed point) and from PIL's NEAREST resize (Keras load_img)."""
import io
import json

import cv2
import numpy as np
import PIL
from PIL import Image

rng = np.random.default_rng(20211227)
W, H = 7, 5
expected = {"versions": {"opencv": cv2.__version__, "pillow": PIL.__version__, "numpy": np.__version__},
            "decode": {}, "resize": {}}


def luma(rgb):
    rgb = rgb.astype(np.float64)
    out = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    same = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return np.where(same, rgb[..., 0], out)


def record(name, image, gray, channels, depth):
    image.save(name)
    expected["decode"][name] = {"width": W, "height": H, "channels": channels, "bitDepth": depth,
                                "gray": [float(v) for v in gray.reshape(-1)]}


gray8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
record("gray8.png", Image.fromarray(gray8, "L"), gray8, 1, 8)

gray16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
record("gray16.png", Image.fromarray(gray16.astype(np.int32), "I").convert("I;16"), gray16, 1, 16)

alpha = rng.integers(0, 256, (H, W), dtype=np.uint8)
record("gray_alpha.png", Image.fromarray(np.dstack([gray8, alpha]), "LA"), gray8, 2, 8)

rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
rgb[0, :3] = [[10, 10, 10], [200, 200, 200], [255, 255, 255]]  # gray stored as RGB stays exact
record("rgb.png", Image.fromarray(rgb, "RGB"), luma(rgb), 3, 8)
record("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), luma(rgb), 4, 8)

palette_colors = rng.integers(0, 256, (16, 3), dtype=np.uint8)
indices = rng.integers(0, 16, (H, W), dtype=np.uint8)
pal = Image.fromarray(indices, "P")
pal.putpalette(palette_colors.reshape(-1).tolist())
record("palette.png", pal, luma(palette_colors[indices]), 3, 8)

bits = rng.integers(0, 2, (H, W)).astype(bool)
record("gray1.png", Image.fromarray(bits), np.where(bits, 255, 0), 1, 8)

# JPEG: expectations from PIL's own decode of the same bytes (libjpeg, islow IDCT).
smooth = (np.add.outer(np.arange(H) * 30, np.arange(W) * 20) % 256).astype(np.uint8)
Image.fromarray(smooth, "L").save("gray.jpeg", quality=95)
expected["decode"]["gray.jpeg"] = {"width": W, "height": H, "channels": 1, "bitDepth": 8,
                                   "gray": [float(v) for v in np.asarray(Image.open("gray.jpeg")).reshape(-1)]}
smooth_rgb = np.dstack([smooth, 255 - smooth, smooth // 2])
Image.fromarray(smooth_rgb, "RGB").save("rgb.jpeg", quality=95)
decoded = np.asarray(Image.open("rgb.jpeg").convert("RGB"))
expected["decode"]["rgb.jpeg"] = {"width": W, "height": H, "channels": 3, "bitDepth": 8,
                                  "gray": [float(v) for v in luma(decoded).reshape(-1)]}
Image.fromarray(smooth_rgb, "RGB").convert("CMYK").save("cmyk.jpeg", quality=95)

# Resize goldens on one random float image.
src = (rng.random((11, 13)) * 255).astype(np.float32)
expected["resize"]["source"] = {"width": 13, "height": 11, "pixels": [float(v) for v in src.reshape(-1)]}
flags = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}
targets = [(26, 22), (5, 4), (9, 7), (13, 33), (4, 11), (39, 11)]
cases = []
for method, flag in flags.items():
    for (w, h) in targets:
        out = cv2.resize(src, (w, h), interpolation=flag)
        cases.append({"method": method, "width": w, "height": h, "pixels": [float(v) for v in out.reshape(-1)]})
for (w, h) in targets:
    out = np.asarray(Image.fromarray(src, "F").resize((w, h), Image.NEAREST))
    cases.append({"method": "nearest-pil", "width": w, "height": h, "pixels": [float(v) for v in out.reshape(-1)]})
expected["resize"]["cases"] = cases

with open("expected.json", "w") as f:
    json.dump(expected, f, separators=(",", ":"))

"""One real training epoch in PyTorch, the comparator of `bench`'s segment_epoch_256 and
classify_epoch_224 (never run by tests or CI; scripts/bench-peers.sh runs it with EPOCHS=1).

What the engine's epoch does, done the way a PyTorch user would:
  classify  kermany224/train, 224² (native size), gray replicated to 3 channels / 255; the encoder of
            ../shared/peers/bench_cls_torch.py (EfficientNet-B0 to block5c + conv head); CE with
            balanced class weights; SGD lr 1e-3, momentum 0.9, Nesterov; batch 16.
  segment   pediatric-lungs pairs, resized to 256² by area (PIL BOX), masks thresholded at ½; each
            training pair shifted ±2 px, rotated ±5° and flipped half the time, identically on image
            and mask (bilinear, mask re-thresholded); smp Unet('efficientnet-b0'); focal Tversky
            (α 0.7, γ 0.75); Adam 1e-3; batch 4.
Both hold out ~10 % of the images, whole patients, for validation, run one epoch, a validation pass,
save the weights, and predict the validation split with them (as the engine's stage does at the
end). Data comes through a DataLoader (shuffle, --workers worker processes, default 2) decoding from
disk each epoch; torch runs on --threads (2). Prints the phases' seconds and one JSON line.

Run (channels-last, jemalloc preloaded, as ../shared/peers):
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python bench/peers/epoch_torch.py classify
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python bench/peers/epoch_torch.py segment
"""
import argparse
import csv
import hashlib
import json
import os
import random
import re
import resource
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image


def patient_of(name):
    """Kermany's patient: person123_…, IM-0115-…, NORMAL2-IM-0012-…"""
    m = re.match(r"(person\d+)_", name) or re.match(r"((?:NORMAL2-)?IM-\d+)-", name)
    return m.group(1) if m else name


def hold_out(items, patient, fraction, seed=42):
    """Whole patients, in a seeded hash order, into validation until `fraction` of the items."""
    by_patient = {}
    for item in items:
        by_patient.setdefault(patient(item), []).append(item)
    order = sorted(by_patient, key=lambda p: hashlib.sha1(f"{seed}:{p}".encode()).hexdigest())
    val, target = [], fraction * len(items)
    for p in order:
        if len(val) >= target:
            break
        val += by_patient[p]
    chosen = set(map(id, val))
    return [i for i in items if id(i) not in chosen], val


def gray3(array):
    x = torch.from_numpy(array.astype(np.float32) / 255.0)
    return x.unsqueeze(0).expand(3, *x.shape).contiguous()


class ChestXRays(torch.utils.data.Dataset):
    classes = ["bacterial", "normal", "viral"]

    def __init__(self, items, size):
        self.items, self.size = items, size

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = Image.open(path).convert("L")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.NEAREST)
        return gray3(np.asarray(image)), label


class LungPairs(torch.utils.data.Dataset):
    def __init__(self, items, size, augment):
        self.items, self.size, self.augment = items, size, augment

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image_path, mask_path = self.items[i]
        image = Image.open(image_path).convert("L").resize((self.size, self.size), Image.BOX)
        mask = Image.open(mask_path).convert("L").resize((self.size, self.size), Image.BOX)
        mask = mask.point(lambda v: 255 if v >= 128 else 0)
        if self.augment:
            angle = random.uniform(-5, 5)
            dx, dy = random.randint(-2, 2), random.randint(-2, 2)
            image = image.rotate(angle, Image.BILINEAR, translate=(dx, dy), fillcolor=0)
            mask = mask.rotate(angle, Image.BILINEAR, translate=(dx, dy), fillcolor=0)
            if random.random() < 0.5:
                image, mask = image.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
        m = torch.from_numpy((np.asarray(mask) >= 128).astype(np.float32)).unsqueeze(0)
        return gray3(np.asarray(image)), m


def focal_tversky(logits, masks, alpha=0.7, gamma=0.75, smooth=1e-10):
    p = torch.sigmoid(logits).flatten()
    y = masks.flatten()
    tp = (p * y).sum()
    index = (tp + smooth) / (tp + alpha * ((1 - p) * y).sum() + (1 - alpha) * (p * (1 - y)).sum() + smooth)
    return (1 - index) ** gamma


def classify_setup(args):
    sys.path.insert(0, args.peers)
    from bench_cls_torch import Classifier
    root = os.path.join(args.data, "kermany224", "train")
    items = []
    for folder in ("NORMAL", "PNEUMONIA"):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            label = 1 if folder == "NORMAL" else (2 if "virus" in name else 0)
            items.append((os.path.join(root, folder, name), label))
    train, val = hold_out(items, lambda it: patient_of(os.path.basename(it[0])), 0.1)
    counts = np.bincount([l for _, l in train], minlength=3)
    weights = torch.tensor(len(train) / (3 * counts), dtype=torch.float32)
    model = Classifier()
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    return model, ChestXRays(train, 224), ChestXRays(val, 224), 16, loss_fn, optimizer


def segment_setup(args):
    import segmentation_models_pytorch as smp
    root = os.path.join(args.data, "pediatric-lungs")
    with open(os.path.join(root, "pairs.csv")) as f:
        rows = list(csv.DictReader(f))
    items = [(os.path.join(root, "images", r["image"]), os.path.join(root, "masks", r["mask"]), r["patient"]) for r in rows]
    train, val = hold_out(items, lambda it: it[2], 0.1)
    model = smp.Unet("efficientnet-b0", encoder_weights=None, in_channels=3, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pairs = lambda xs: [(a, b) for a, b, _ in xs]
    return model, LungPairs(pairs(train), 256, True), LungPairs(pairs(val), 256, False), 4, focal_tversky, optimizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["classify", "segment"])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--peers", default="../shared/peers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    random.seed(42)
    model, train, val, batch, loss_fn, optimizer = (classify_setup if args.task == "classify" else segment_setup)(args)
    model = model.to(memory_format=torch.channels_last)
    loader = lambda data, shuffle: torch.utils.data.DataLoader(data, batch_size=batch, shuffle=shuffle, num_workers=args.workers)
    load = time.perf_counter() - started

    epoch_start = time.perf_counter()
    model.train()
    steps = waiting = 0.0
    tick = time.perf_counter()
    for x, y in loader(train, True):
        waiting += time.perf_counter() - tick
        tick = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        steps += now - tick
        tick = now

    def predict():
        model.eval()
        total, n = 0.0, 0
        with torch.inference_mode():
            for x, y in loader(val, False):
                total += float(loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)) * len(x)
                n += len(x)
        return total / n

    tick = time.perf_counter()
    val_loss = predict()
    validation = time.perf_counter() - tick
    epoch = time.perf_counter() - epoch_start
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        torch.save(model.state_dict(), os.path.join(folder, "model.pt"))
    predict()
    final = time.perf_counter() - tick
    wall = time.perf_counter() - started
    rss = lambda who: resource.getrusage(who).ru_maxrss / 1024 / 1024
    print(f"{args.task}: {len(train)} train / {len(val)} val; load {load:.1f} s, epoch {epoch:.1f} s "
          f"(steps {steps:.1f} s, waiting for data {waiting:.1f} s, validation {validation:.1f} s), "
          f"save + final predictions {final:.1f} s, wall {wall:.1f} s; val loss {val_loss:.4f}", file=sys.stderr)
    print("JSON", json.dumps(dict(
        framework=f"torch {torch.__version__}", task=args.task, train=len(train), val=len(val), workers=args.workers,
        wallSeconds=wall, loadSeconds=load, epochSeconds=epoch, stepSeconds=steps, dataWaitSeconds=waiting,
        validationSeconds=validation, finalSeconds=final, outsideStepsShare=(wall - steps) / wall,
        outsideStepsShareAfterLoading=(epoch - steps) / epoch,
        peakRSSGiB=rss(resource.RUSAGE_SELF), workersPeakRSSGiB=rss(resource.RUSAGE_CHILDREN))))


if __name__ == "__main__":
    main()

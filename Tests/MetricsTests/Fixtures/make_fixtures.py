"""Reference values for MetricsTests, computed with scikit-learn / SciPy / NumPy. Run once, by
hand, in a throw-away environment; the tests read only metrics.json and never need Python.

    python3 -m venv /tmp/gold && /tmp/gold/bin/pip install scikit-learn scipy numpy
    /tmp/gold/bin/python make_fixtures.py

Calibration errors and DeLong's test have no scikit-learn function; they are computed here from
their textbook definitions (explicit bin loops; the O(m·n) Mann–Whitney kernel), independently of
the Swift code's mid-rank formulation. Versions are recorded in the output."""
import json

import numpy as np
import scipy
import sklearn
from scipy import optimize, special, stats
from sklearn import metrics

rng = np.random.default_rng(2021)
K = 3
out = {"versions": {"sklearn": sklearn.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
       "sets": [], "delong": [], "mcnemar": [], "distributions": {}}


def random_set(n, decimals):
    labels = rng.integers(0, K, n)
    logits = rng.normal(0, 1.2, (n, K))
    logits[np.arange(n), labels] += rng.uniform(0.0, 2.5, n)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:  # coarse probabilities make tied scores
        p = np.round(p, decimals)
        p[:, -1] = 1 - p[:, :-1].sum(1)
        p = np.clip(p, 0, 1)
    return labels, p


def ece(conf, correct, edges_or_groups, equal_mass):
    n = len(conf)
    total, worst = 0.0, 0.0
    if equal_mass:
        order = np.argsort(conf, kind="stable")
        groups = np.array_split(order, 15)
    else:
        edges = np.linspace(0, 1, 16)
        groups = []
        for b in range(15):
            lo, hi = edges[b], edges[b + 1]
            groups.append([i for i in range(n) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)])
    for g in groups:
        g = np.asarray(g, dtype=int)
        if len(g) == 0:
            continue
        gap = abs(correct[g].mean() - conf[g].mean())
        total += len(g) / n * gap
        worst = max(worst, gap)
    return total, worst


def macro_interpolated(Y, P):
    fpr, tpr = {}, {}
    for k in range(K):
        fpr[k], tpr[k], _ = metrics.roc_curve(Y[:, k], P[:, k])
    grid = np.unique(np.concatenate([fpr[k] for k in range(K)]))
    mean = np.zeros_like(grid)
    for k in range(K):
        mean += np.interp(grid, fpr[k], tpr[k])
    return metrics.auc(grid, mean / K)


sets = []
for n, decimals in [(30, 1), (57, None), (200, 2), (624, None)]:
    labels, p = random_set(n, decimals)
    sets.append((labels, p))
    Y = np.eye(K)[labels]
    pred = p.argmax(1)
    prec, rec, _ = metrics.precision_recall_curve(Y.ravel(), p.ravel())
    conf = p.max(1)
    correct = (pred == labels).astype(float)
    e_w, m_w = ece(conf, correct, None, False)
    e_m, m_m = ece(conf, correct, None, True)
    nll = lambda T: -np.mean(np.log(np.clip(special.softmax(np.log(np.clip(p, 1e-15, None)) / T, axis=1)[np.arange(n), labels], 1e-15, None)))
    temperature = optimize.minimize_scalar(nll, bounds=(0.02, 50), method="bounded", options={"xatol": 1e-10}).x
    out["sets"].append({
        "labels": labels.tolist(), "probabilities": p.ravel().tolist(),
        "confusion": metrics.confusion_matrix(labels, pred, labels=[0, 1, 2]).tolist(),
        "accuracy": metrics.accuracy_score(labels, pred),
        "precisionWeighted": metrics.precision_score(labels, pred, labels=[0, 1, 2], average="weighted", zero_division=0),
        "recallWeighted": metrics.recall_score(labels, pred, labels=[0, 1, 2], average="weighted", zero_division=0),
        "f1Weighted": metrics.f1_score(labels, pred, labels=[0, 1, 2], average="weighted", zero_division=0),
        "precisionMacro": metrics.precision_score(labels, pred, labels=[0, 1, 2], average="macro", zero_division=0),
        "recallMacro": metrics.recall_score(labels, pred, labels=[0, 1, 2], average="macro", zero_division=0),
        "f1Macro": metrics.f1_score(labels, pred, labels=[0, 1, 2], average="macro", zero_division=0),
        "mcc": metrics.matthews_corrcoef(labels, pred),
        "kappa": metrics.cohen_kappa_score(labels, pred),
        "aurocMicro": metrics.roc_auc_score(Y.ravel(), p.ravel()),
        "aurocMacro": metrics.roc_auc_score(labels, p, multi_class="ovr", average="macro"),
        "aurocMacroInterpolated": macro_interpolated(Y, p),
        "aurocPerClass": [metrics.roc_auc_score(Y[:, k], p[:, k]) for k in range(K)],
        "auprcMicro": metrics.auc(rec, prec),
        "averagePrecisionMicro": metrics.average_precision_score(Y, p, average="micro"),
        "brier": float(np.mean(np.sum((p - Y) ** 2, axis=1))),
        "eceWidth": e_w, "mceWidth": m_w, "eceMass": e_m, "mceMass": m_m,
        "temperature": float(temperature),
    })


def delong_direct(truth, a, b):
    pos, neg = np.where(truth)[0], np.where(~truth)[0]
    def psi(s):
        x, y = s[pos][:, None], s[neg][None, :]
        return (x > y) + 0.5 * (x == y)
    ka, kb = psi(a), psi(b)
    v10 = np.stack([ka.mean(1), kb.mean(1)])
    v01 = np.stack([ka.mean(0), kb.mean(0)])
    s = np.cov(v10) / len(pos) + np.cov(v01) / len(neg)
    auc = v10.mean(1)
    z = (auc[0] - auc[1]) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return float(auc[0]), float(auc[1]), float(z), float(2 * stats.norm.sf(abs(z)))


for (labels, p), (_, q) in [(sets[1], random_set(57, None)), (sets[2], random_set(200, 2))]:
    for k in range(K):
        truth = labels == k
        a_auc, b_auc, z, pv = delong_direct(truth, p[:, k], q[:, k])
        out["delong"].append({"truth": truth.tolist(), "a": p[:, k].tolist(), "b": q[:, k].tolist(),
                              "aucA": a_auc, "aucB": b_auc, "z": z, "p": pv})

for b, c in [(3, 9), (0, 5), (7, 7), (30, 12), (40, 61)]:
    if b + c < 25:
        pv = stats.binomtest(min(b, c), b + c, 0.5).pvalue
    else:
        pv = stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1)
    out["mcnemar"].append({"b": b, "c": c, "p": float(pv)})

out["distributions"] = {
    "tQuantiles": [[p, df, float(stats.t.ppf(p, df))] for p, df in [(0.975, 623), (0.9, 5), (0.025, 3), (0.995, 40)]],
    "normalQuantiles": [[p, float(stats.norm.ppf(p))] for p in [0.975, 0.5, 1e-6, 0.8413]],
    "betaInc": [[x, a, b, float(special.betainc(a, b, x))] for x, a, b in [(0.3, 2.0, 5.0), (0.9, 0.5, 311.5), (0.5, 10.0, 0.5)]],
}

with open("metrics.json", "w") as f:
    json.dump(out, f, separators=(",", ":"))

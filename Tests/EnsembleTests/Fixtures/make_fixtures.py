"""Reference weights for EnsembleTests: SciPy's SLSQP on scikit-learn's log loss of a weighted sum of
member probabilities over the simplex (SPEC §6.1). Run once, by hand, in a throw-away environment;
the tests read only weights.json and never need Python.

    python3 -m venv /tmp/gold && /tmp/gold/bin/pip install scikit-learn scipy numpy
    /tmp/gold/bin/python make_fixtures.py

The objective is SPEC §6.1's: probabilities clipped to [1e-15, 1 - 1e-15], rows renormalised, the
mean of -log of the true class (written out with NumPy, since newer scikit-learn versions clip at
the dtype's epsilon instead; scikit-learn's log_loss is checked to agree where nothing clips). The
reference optimum is the best of SLSQP runs from 50 seeded random starts with an analytic gradient
and ftol 1e-14; the released code's own settings (finite differences, ftol 1e-6) are run too, for the
record. Versions are written into the output."""
import json

import numpy as np
import scipy
import sklearn
from scipy import optimize
from sklearn import metrics

rng = np.random.default_rng(61)
K = 3


def softmax_members(n, m, labels, strengths):
    out = []
    for s in strengths:
        logits = rng.normal(0, 1.0, (n, K))
        logits[np.arange(n), labels] += s * rng.uniform(0.0, 2.0, n)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        out.append(np.round(p, 6))
    return out


def renorm(p):
    return p / p.sum(1, keepdims=True)


def objective(w, members, y):
    p = sum(wi * pi for wi, pi in zip(w, members))
    p = np.clip(p, 1e-15, 1 - 1e-15)
    p = p / p.sum(1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def gradient(w, members, y):
    # Of the renormalised loss, which is scale-invariant in w (rows of each member sum to 1).
    a = np.stack([pi[np.arange(len(y)), y] for pi in members], 1)
    c = a @ w
    return -(a / c[:, None]).mean(0) + 1 / np.sum(w)


def slsqp(members, y, start, exact):
    cons = {"type": "eq", "fun": lambda w: 1 - np.sum(w)}
    kwargs = dict(method="SLSQP", bounds=[(0, 1)] * len(members), constraints=cons)
    if exact:
        kwargs.update(jac=lambda w, *_: gradient(w, members, y), options={"ftol": 1e-14, "maxiter": 1000})
    res = optimize.minimize(objective, start, args=(members, y), **kwargs)
    return res.x, objective(res.x, members, y)


sets = []
for name, n, strengths, extra in [
    ("three members", 240, [1.0, 1.3, 0.7], None),
    ("five members", 300, [1.2, 0.8, 1.0, 1.5, 0.5], None),
    ("a useless member", 240, [1.1, 0.9], "useless"),
    ("a duplicated member", 240, [1.0, 1.2, 0.8], "duplicate"),
]:
    y = rng.integers(0, K, n)
    members = softmax_members(n, len(strengths), y, strengths)
    members = [renorm(p) for p in members]
    if extra == "useless":  # probabilities that ignore the label
        noise = rng.dirichlet([1, 1, 1], n)
        members.append(renorm(np.round(noise, 6)))
    if extra == "duplicate":
        members.append(members[0].copy())
    best = None
    for _ in range(50):
        w, f = slsqp(members, y, rng.random(len(members)), exact=True)
        if best is None or f < best[1]:
            best = (w, f)
    paper_w, paper_f = slsqp(members, y, rng.random(len(members)), exact=False)
    pw = sum(wi * pi for wi, pi in zip(best[0], members))
    assert abs(metrics.log_loss(np.eye(K)[y], pw) - best[1]) < 1e-9
    sets.append({
        "name": name, "labels": y.tolist(), "members": [p.ravel().tolist() for p in members],
        "weights": best[0].tolist(), "objective": best[1],
        "unique": extra != "duplicate",
        "paperSettingsWeights": paper_w.tolist(), "paperSettingsObjective": paper_f,
    })

out = {"versions": {"scipy": scipy.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}, "sets": sets}
with open("weights.json", "w") as f:
    json.dump(out, f, indent=1)
for s in sets:
    print(s["name"], np.round(s["weights"], 6), s["objective"], "paper settings:", np.round(s["paperSettingsWeights"], 4), s["paperSettingsObjective"])

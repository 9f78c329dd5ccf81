"""Model-wide state budgets: how many complex modes each system of a network keeps.

A network's systems are its layers' (one per channel of an S4D / DSS / S4 layer, one per S5 / LRU layer);
system s has N_s modes and keeps k_s in [1, N_s] (2 k_s real states). A budget is a total K of modes
(floor(states / 2)); every rule returns k with sum_s k_s <= K (ValueError when K is below one mode per
system). The rules:

  uniform   every system keeps the same fraction of its modes, k_s = max(1, floor(K N_s / sum N)).
  energy    (CompreSSM, hankelreg) one global threshold E on each system's retained Hankel energy:
            k_s = ceil(r_s(E) / 2), r_s(E) the smallest order whose HSVs carry a fraction >= E of the
            system's sum; the largest E whose total fits K.
  last      (LAST) each mode's H-infinity score h = (||c|| ||b|| / (1 - |p|))^2 (continuous: / |Re p|),
            normalised within its layer, h_i / sum_{j: h_j >= h_i} h_j, and one global threshold: the K
            modes of largest normalised score are kept (each system its best one first).
  bound     the allocation that minimises the network's composed output-error bound sum_l w_l e_l(k),
            where e_l = max over the layer's systems of their error bound e_s(k_s) (a layer with
            block-diagonal channels has the largest channel's gain) and w_l the layer's amplification
            through the blocks after it (composition.py). Per layer, a threshold tau_l gives
            k_s = min{k : e_s(k) <= tau_l}; the thresholds come from the Lagrangian min sum w_l tau_l +
            mu cost_l(tau_l) (bisection on mu: optimal on the convex hull), then the budget left is spent
            greedily on the step of best bound decrease per mode; the uniform allocation, refined the
            same way, is the other candidate, and the smaller composed bound is returned (so it is never
            above uniform's).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALLOCATIONS = ("bound", "last", "energy", "uniform")


@dataclass
class SystemData:
    """What the rules read of one system: its full modes N, bound e(k) for k = 0..N modes kept (non-increasing,
    e(N) = 0), Hankel singular values, each mode's LAST score (unnormalised H-inf score)."""
    layer: int
    n_modes: int
    errors: np.ndarray
    hsv: np.ndarray
    scores: np.ndarray


def check_budget(who: str, systems: list, K: int) -> None:
    if K < len(systems):
        raise ValueError(f"{who}: the budget allows {K} complex modes ({2 * K} real states), fewer than one per system "
                         f"({len(systems)} systems: each channel of an S4D / DSS / S4 layer, each S5 / LRU layer)")


def uniform(systems: list, K: int) -> np.ndarray:
    """The largest common fraction f with sum_s max(1, floor(f N_s)) <= K."""
    N = np.array([s.n_modes for s in systems])
    alloc = lambda f: np.clip(np.floor(f * N + 1e-9).astype(int), 1, N)  # noqa: E731
    lo, hi = 0.0, 1.0
    if alloc(hi).sum() <= K:
        return alloc(hi)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if alloc(mid).sum() <= K else (lo, mid)
    return alloc(lo)


def energy(systems: list, K: int) -> np.ndarray:
    """The largest global energy threshold whose allocation fits K (module docstring)."""
    fractions = []
    for s in systems:
        h = np.asarray(s.hsv, float)
        total = h.sum()
        fractions.append(np.cumsum(h) / total if total > 0 else np.ones_like(h))

    def alloc(E):
        ks = []
        for s, f in zip(systems, fractions):
            r = int(np.searchsorted(f, E * (1 - 1e-12), side="left")) + 1        # smallest r with f[r-1] >= E
            ks.append(max(1, min(s.n_modes, -(-r // 2))))
        return np.array(ks)

    cands = np.unique(np.concatenate([f for f in fractions] + [[0.0]]))
    lo, hi = 0, len(cands) - 1            # alloc(cands[0]) fits (all 1s); find the largest index that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if alloc(cands[mid]).sum() <= K:
            lo = mid
        else:
            hi = mid - 1
    return alloc(cands[lo])


def last(systems: list, K: int) -> np.ndarray:
    """LAST's per-layer normalised scores and one global threshold (module docstring)."""
    normalised = []
    layers = sorted({s.layer for s in systems})
    per_layer = {l: np.concatenate([s.scores for s in systems if s.layer == l]) for l in layers}
    norm_of = {}
    for l, h in per_layer.items():
        order = np.argsort(h)                                   # ascending
        tail = np.cumsum(h[order][::-1])[::-1]                  # sum of the scores >= each
        v = np.zeros_like(h)
        v[order] = np.where(tail > 0, h[order] / np.where(tail > 0, tail, 1.0), 0.0)
        norm_of[l] = v
    offsets = {l: 0 for l in layers}
    for s in systems:
        n = len(s.scores)
        normalised.append(norm_of[s.layer][offsets[s.layer]:offsets[s.layer] + n])
        offsets[s.layer] += n
    ks = np.ones(len(systems), int)
    # each system's best mode is taken first; the rest by one global ranking of normalised scores
    rest = [(-v, i, j) for i, v_s in enumerate(normalised) for j, v in enumerate(np.sort(v_s)[::-1][1:])]
    rest.sort()
    left = K - len(systems)
    for _, i, _ in rest:
        if left <= 0:
            break
        if ks[i] < systems[i].n_modes:
            ks[i] += 1
            left -= 1
    return ks


class _Layer:
    """One layer's threshold -> cost curve: candidate thresholds tau (descending) and, for each, the modes
    cost(tau) = sum_s min{k >= 1 : e_s(k) <= tau} and the k per system."""

    def __init__(self, systems: list):
        self.systems = systems
        taus = np.unique(np.concatenate([s.errors[1:] for s in systems]))[::-1]
        self.tau = taus
        self.k = np.stack([self._k_for(s, taus) for s in systems], 1)     # (T, systems)
        self.cost = self.k.sum(1)

    @staticmethod
    def _k_for(s: SystemData, taus: np.ndarray) -> np.ndarray:
        e = np.minimum.accumulate(s.errors)             # non-increasing (a bound may tie)
        # smallest k >= 1 with e[k] <= tau: e[1:] is non-increasing, so search its reverse
        rev = e[1:][::-1]                                # non-decreasing
        idx = np.searchsorted(rev, taus * (1 + 1e-12), side="right")   # how many of e[1..N] are <= tau
        return np.maximum(1, len(rev) - idx + 1).clip(max=s.n_modes)


def composed(systems: list, ks: np.ndarray, weights: dict) -> float:
    """sum_l w_l max_{s in l} e_s(k_s)."""
    worst = {}
    for s, k in zip(systems, ks):
        worst[s.layer] = max(worst.get(s.layer, 0.0), float(s.errors[min(k, s.n_modes)]))
    return float(sum(weights[l] * e for l, e in worst.items()))


def bound(systems: list, K: int, weights: dict) -> np.ndarray:
    """The composed-bound minimising allocation (module docstring)."""
    layer_ids = sorted({s.layer for s in systems})
    index = {l: [i for i, s in enumerate(systems) if s.layer == l] for l in layer_ids}
    curves = {l: _Layer([systems[i] for i in index[l]]) for l in layer_ids}
    w = {l: float(weights[l]) for l in layer_ids}

    def pick(mu):
        return {l: int(np.argmin(w[l] * c.tau + mu * c.cost)) for l, c in curves.items()}

    def cost(choice):
        return sum(int(curves[l].cost[i]) for l, i in choice.items())

    lo, hi = 0.0, 1.0
    while cost(pick(hi)) > K and hi < 1e300:
        hi *= 4
    for _ in range(200):
        mid = (lo + hi) / 2
        if cost(pick(mid)) > K:
            lo = mid
        else:
            hi = mid
    start = pick(hi)
    best = _fill(curves, w, start, K)
    # uniform's layer thresholds, refined the same way: never worse than uniform
    ks_u = uniform(systems, K)
    start_u = {}
    for l, c in curves.items():
        tau_l = max(float(systems[i].errors[ks_u[i]]) for i in index[l])
        start_u[l] = int(np.searchsorted(-c.tau, -tau_l * (1 + 1e-12), side="right") - 1)
        start_u[l] = max(0, start_u[l])
    alt = _fill(curves, w, start_u, K) if cost(start_u) <= K else None

    def value(choice):
        return sum(w[l] * curves[l].tau[i] for l, i in choice.items())

    if alt is not None and value(alt) < value(best):
        best = alt
    ks = np.empty(len(systems), int)
    for l, i in best.items():
        ks[index[l]] = curves[l].k[i]
    if composed(systems, ks_u, weights) < composed(systems, ks, weights):
        ks = ks_u                                           # thresholds ties can favour uniform's exact k
    return ks


def _fill(curves: dict, w: dict, choice: dict, K: int) -> dict:
    """Spend the budget left on the threshold steps of best bound decrease per mode, one at a time."""
    choice = dict(choice)
    left = K - sum(int(curves[l].cost[i]) for l, i in choice.items())
    while True:
        best, best_gain = None, 0.0
        for l, c in curves.items():
            i = choice[l]
            for j in range(i + 1, len(c.tau)):              # the next step that changes the cost
                extra = int(c.cost[j] - c.cost[i])
                if extra > left:
                    break
                gain = w[l] * (c.tau[i] - c.tau[j]) / max(extra, 1)
                if gain > best_gain:
                    best, best_gain = (l, j, extra), gain
                if extra > 0:
                    break
        if best is None:
            return choice
        l, j, extra = best
        choice[l] = j
        left -= extra


def allocate(rule: str, systems: list, K: int, weights: dict | None = None) -> np.ndarray:
    """k per system (module docstring); sum(k) <= K."""
    if rule == "uniform":
        ks = uniform(systems, K)
    elif rule == "energy":
        ks = energy(systems, K)
    elif rule == "last":
        ks = last(systems, K)
    else:
        ks = bound(systems, K, weights)
    if ks.sum() > K:     # every rule spends at most K by construction: this would be a bug
        raise RuntimeError(f"allocate: rule {rule!r} spent {int(ks.sum())} modes of a budget of {K}")
    return ks

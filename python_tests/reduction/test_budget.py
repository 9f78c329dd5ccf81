"""reduce_model with a model-wide state budget: every layer kind, method and allocation rule gives a model
of the library that runs in every view and rebuilds from its config; no allocation exceeds its budget;
the bound-minimising allocation's composed bound is no larger than uniform's; the report carries the
allocation, each layer's bound and its measured error; per-channel counts are stored flat."""
import functools
import warnings

import numpy as np
import pytest
import torch

from dssm_kernels.nn import SequenceClassifier, param_groups
from dssm_kernels.reduction import budget as budgets
from dssm_kernels.reduction import reduce_model
from dssm_kernels.reduction.model import ALLOCATIONS, layer_states

X = torch.randint(0, 7, (3, 30), generator=torch.Generator().manual_seed(0))
KINDS = ["s4d", "dss", "s4", "s5", "lru"]


@functools.lru_cache(maxsize=None)      # reduce_model never modifies its model: each is built (and trained) once
def _model(layer, trained=False, d_state=8, H=6):
    kw = {"l_max": 30} if layer == "s4" else None
    model = SequenceClassifier(3, vocab_size=7, layer=layer, d_model=H, d_state=d_state, n_layers=2, seed=0,
                               dtype=torch.float64, layer_kwargs=kw)
    if trained:       # a few AdamW steps on a fixed batch: parameters no longer at their initialisation
        opt = torch.optim.AdamW(param_groups(model, lr=3e-2))
        y = torch.tensor([0, 1, 2])
        for _ in range(25):
            loss = torch.nn.functional.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _steps(model, x):
    state = None
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
    return y


# every kind, method and rule at least once (examples/reduce_trained.py runs every combination on trained models)
@pytest.mark.parametrize("layer,method,allocate", [
    ("s4d", "bt", "bound"), ("s4d", "tlh2", "energy"), ("dss", "bsp", "last"), ("s4", "bt", "bound"),
    ("s5", "h2", "uniform"), ("s5", "msp", "bound"), ("lru", "modal", "last"), ("lru", "bsp", "energy")])
def test_every_kind_method_and_rule_gives_a_model_that_runs(layer, method, allocate):
    model = _model(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # S4's modal form is inexact (test_reduction_s4.py)
        red, rep = reduce_model(model, fraction=0.5, method=method, allocate=allocate, max_iter=10,
                                horizon=30 if method == "tlh2" else None)
    budget = rep.request["budget_modes"] * 2
    assert rep.states_before == 2 * (6 * 8 if layer in ("s4d", "dss", "s4") else 8)
    assert rep.states_after <= budget <= rep.states_before // 2
    assert rep.states_after == sum(layer_states(b.layer) for b in red.blocks)
    with torch.no_grad():
        y = red(X)
        torch.testing.assert_close(red(X, mode="scan"), y, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(_steps(red, X), y, rtol=1e-9, atol=1e-10)
    again = SequenceClassifier.from_config(red.current_config())
    again.load_state_dict(red.state_dict())
    with torch.no_grad():
        assert torch.equal(again(X), y)
    for r in rep.layers:      # the report: allocation, bound (None for h2), measured error within the bound
        assert np.all(np.asarray(r.modes) >= 1)
        if method in ("h2", "tlh2"):
            assert r.layer_bound is None
        elif r.layer_bound is not None and np.isfinite(r.layer_bound):
            assert np.max(r.hinf_error) <= r.layer_bound * (1 + 1e-9) + 1e-9 * np.max(r.hinf_full)


@pytest.mark.parametrize("layer", KINDS)
def test_no_allocation_exceeds_its_budget(layer):
    model = _model(layer)
    for budget in (24, 40, 60):
        if layer in ("s5", "lru"):
            budget //= 4          # two MIMO layers of 8 states
        for rule in ALLOCATIONS:   # (for MIMO layers every rule is the same split of one system per layer)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                red, rep = reduce_model(model, budget=budget, allocate=rule, measure=False)
            assert rep.states_after <= budget, (rule, budget, rep.states_after)
            assert sum(int(np.sum(r.modes)) for r in rep.layers) * 2 <= budget


@pytest.mark.parametrize("layer", ["s4d", "s5"])
@pytest.mark.parametrize("method", ["bt", "modal"])
def test_bound_allocation_is_no_worse_than_uniform_on_a_trained_model(layer, method):
    """The composed bound of the curves the allocation minimises, and the reported one after reduction."""
    model = _model(layer, trained=True, d_state=16)
    for fraction in (0.25, 0.5):
        _, rb = reduce_model(model, fraction=fraction, method=method, allocate="bound", measure=False)
        _, ru = reduce_model(model, fraction=fraction, method=method, allocate="uniform", measure=False)
        assert rb.request["objective"] <= ru.request["objective"] * (1 + 1e-12)
        assert rb.request["objective_uniform"] == pytest.approx(ru.request["objective"], rel=1e-12)


def test_per_channel_counts_are_stored_flat():
    """A budget split unevenly over the channels keeps each channel's own count: the layer stores 2 M states
    (not H times the largest count), as its parameters show."""
    model = _model("s4d", trained=True, d_state=16)
    red, rep = reduce_model(model, fraction=0.3, allocate="last", measure=False)
    layer = red.blocks[0].layer
    assert layer.layout is not None and len(set(layer.channel_modes)) > 1
    assert layer_states(layer) == 2 * layer.layout.M == 2 * sum(layer.channel_modes)
    assert layer.log_A_real.shape == (layer.layout.M,)
    assert rep.layers[0].states_after == 2 * layer.layout.M < layer.d_model * 2 * max(layer.channel_modes)


def test_composed_bound_is_the_weighted_sum_of_layer_bounds():
    model = _model("s4d", trained=True)
    red, rep = reduce_model(model, fraction=0.5)
    assert rep.composed_bound == pytest.approx(rep.head * sum(r.weight * r.layer_bound for r in rep.layers), rel=1e-12)
    # the earlier block's error passes through the later one: its weight is larger
    assert rep.layers[0].weight > rep.layers[1].weight > 0
    assert "composed bound" in rep.summary() and "blocks.0.layer" in rep.summary()


# ------------------------------------------------------------------------------- the rules on their own
def _systems(rng, n_systems, layers=3):
    out = []
    for i in range(n_systems):
        N = int(rng.integers(1, 9))
        hsv = np.sort(rng.exponential(1.0, 2 * N) * 10.0 ** rng.uniform(-3, 0, 2 * N))[::-1]
        tails = 2 * np.concatenate([np.cumsum(hsv[::-1])[::-1], [0.0]])
        errors = tails[np.minimum(2 * np.arange(N + 1), 2 * N)]
        out.append(budgets.SystemData(int(rng.integers(0, layers)), N, errors, hsv, rng.exponential(1.0, N)))
    return out


def test_rules_respect_the_budget_and_bound_beats_uniform_on_200_random_networks():
    rng = np.random.default_rng(0)
    for _ in range(200):
        systems = _systems(rng, int(rng.integers(1, 12)))
        weights = {l: float(rng.uniform(0.1, 10)) for l in range(3)}
        total = sum(s.n_modes for s in systems)
        K = int(rng.integers(len(systems), total + 1))
        for rule in ALLOCATIONS:
            ks = budgets.allocate(rule, systems, K, weights)
            assert ks.sum() <= K and all(1 <= k <= s.n_modes for k, s in zip(ks, systems)), rule
        b = budgets.composed(systems, budgets.allocate("bound", systems, K, weights), weights)
        u = budgets.composed(systems, budgets.uniform(systems, K), weights)
        assert b <= u * (1 + 1e-12)


def test_bound_allocation_is_optimal_on_small_networks():
    """Against exhaustive search over every allocation of small networks (the Lagrangian and greedy fill
    are exact on these convex curves, 2 * HSV tails)."""
    import itertools
    rng = np.random.default_rng(1)
    for _ in range(30):
        systems = _systems(rng, 4, layers=2)
        weights = {0: float(rng.uniform(0.5, 2)), 1: float(rng.uniform(0.5, 2))}
        K = int(rng.integers(4, sum(s.n_modes for s in systems) + 1))
        best = min(budgets.composed(systems, np.array(ks), weights)
                   for ks in itertools.product(*(range(1, s.n_modes + 1) for s in systems)) if sum(ks) <= K)
        got = budgets.composed(systems, budgets.allocate("bound", systems, K, weights), weights)
        assert got <= best * (1 + 1e-9)

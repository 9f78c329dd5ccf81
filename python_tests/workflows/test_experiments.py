"""The seed papers' experiments (dssm_kernels.workflows.experiments): each quick run writes its JSON,
Markdown and PNG with sane values; the pieces they rest on (S5 transfer function, spike finder, noise,
correlations, paired verdicts) against independent references; bad names."""
import json
import math
import os
import re

import numpy as np
import pytest
import scipy.stats
import torch

from dssm_kernels.cli import main
from dssm_kernels.nn import S5
from dssm_kernels.workflows import _exp_common as E
from dssm_kernels.workflows import experiments, reporting
from dssm_kernels.workflows import exp_bt_init, exp_ptd_robustness as ptd


def _tables(md: str) -> list[list[list[str]]]:
    """The Markdown tables of md as lists of rows of cells (the rule line dropped)."""
    tables, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def _accuracies(obj, key=""):
    """Every number stored under a key containing 'acc' (lists included), recursively."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _accuracies(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _accuracies(v, key)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and ("acc" in key or key.startswith("bt_")
                                                                          or key.startswith("skew")):
        yield obj


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """All three quick runs into one folder, through the CLI entry (as `dssm experiment NAME --quick`)."""
    out = str(tmp_path_factory.mktemp("experiments"))
    threads = torch.get_num_threads()
    for name in experiments.names():
        assert main(["experiment", name, "--out", out, "--quick"]) == 0
    assert torch.get_num_threads() == threads          # the fixed-thread context restores the setting
    return out


@pytest.mark.parametrize("name", ["bt-init", "compression", "ptd-robustness", "frontier"])
def test_quick_run_writes_sane_outputs(outputs, name):
    paths = {ext: os.path.join(outputs, f"{name}.{ext}") for ext in ("json", "md", "png")}
    res = json.load(open(paths["json"]))
    assert res["name"] == name and res["quick"] is True and res["seconds"] > 0
    assert res["command"] == f"dssm experiment {name} --out {outputs} --quick"
    accs = list(_accuracies(res))
    assert len(accs) >= 4 and all(0.0 <= a <= 1.0 for a in accs)
    md = open(paths["md"]).read()
    assert f"`{res['command']}`" in md and "Machine:" in md and "## Reading" in md
    tables = _tables(md)
    assert len(tables) >= 2
    for t in tables:                                 # every table parses: one header, a rule, equal widths
        assert len(t) >= 3 and set("".join(t[1])) <= set("-")
        assert all(len(row) == len(t[0]) for row in t)
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(paths["png"]) > 10_000


@pytest.mark.parametrize("name", ["bt-init", "compression", "ptd-robustness", "frontier", "penalty-cost"])
def test_render_from_json_reproduces_markdown(outputs, tmp_path, name):
    """render() rebuilds NAME.md from NAME.json alone, identical to what run() wrote."""
    for ext in ("json", "md"):
        with open(os.path.join(outputs, f"{name}.{ext}")) as f, open(tmp_path / f"{name}.{ext}", "w") as g:
            g.write(f.read())
    os.remove(tmp_path / f"{name}.md")
    experiments.render(name, out=str(tmp_path))
    assert (tmp_path / f"{name}.md").read_text() == open(os.path.join(outputs, f"{name}.md")).read()
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="no results at"):
        experiments.render(name, out=str(tmp_path / "empty"))


def test_bt_init_contents(outputs):
    res = json.load(open(os.path.join(outputs, "bt-init.json")))
    cfg = res["config"]
    assert len(res["rows"]) == len(cfg["tasks"]) * len(cfg["seeds"]) * len(cfg["ranks"])
    assert {r["d_state"] for r in res["rows"]} == set(cfg["ranks"])
    for name, c in res["correlation"].items():
        assert c["n"] >= 3 and (c["raw"] is None or -1 <= c["raw"]["spearman"] <= 1)


def test_compression_contents(outputs):
    res = json.load(open(os.path.join(outputs, "compression.json")))
    for row in res["rows"]:
        assert 0 < row["ssm_removed"] < 1 and 0 < row["params_removed"] < row["ssm_removed"]
        for lay in row["layers"]:
            assert lay["kernel_error_L"] >= 0 and lay["hinf_max"] >= 0
            if lay["bound_max"] is not None:             # BT's and modal's guaranteed bounds hold
                assert lay["hinf_max"] <= lay["bound_max"] * (1 + 1e-9)
    ranks = res["config"]["ranks"]
    fracs = [r["ssm_removed"] for r in res["rows"] if r["method"] == "bt" and r["seed"] == res["config"]["seeds"][0]]
    assert len(fracs) == len(ranks) and fracs == sorted(fracs)      # ranks descend: smaller d_state removes more


def test_ptd_contents(outputs):
    res = json.load(open(os.path.join(outputs, "ptd-robustness.json")))
    cfg = res["config"]
    assert len(res["runs"]) == len(cfg["seeds"]) * len(cfg["inits"])
    for run in res["runs"]:
        assert set(run["acc"]) == set(ptd.NOISES)
        assert all(a == run["test_acc"] for a in (v[0] for v in run["acc"].values()))   # eps = 0 is the clean input
        assert all(0 <= p <= math.pi for p in run["peaks"])


def test_s5_frequency_response_against_impulse_response():
    """G(e^{iw}) against the DFT of the layer's own impulse responses (unit impulse into each channel)."""
    layer = S5(3, 8, dtype=torch.float64, seed=0, dt_min=0.05, dt_max=0.3)
    L = 4000                                          # long enough for every mode to decay below 1e-12
    u = torch.zeros(3, L, 3, dtype=torch.float64)
    u[torch.arange(3), 0, torch.arange(3)] = 1.0
    with torch.no_grad():
        h = layer(u)                                  # h[k, l, j]: output j at lag l for an impulse into k
    assert h[:, -50:].abs().max() < 1e-12
    w = np.array([0.0, 0.3, 1.1, math.pi])
    ref = np.einsum("klj,wl->wjk", h.numpy(), np.exp(-1j * np.outer(w, np.arange(L))))
    np.testing.assert_allclose(ptd.frequency_response(layer, w), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ptd.gain(layer, w), np.linalg.svd(ref, compute_uv=False)[:, 0], rtol=1e-9)


def test_peaks_noise_and_perturbation():
    w = np.linspace(0, math.pi, 1001)
    g = 1 + np.exp(-((w - 0.5) / 0.01) ** 2) * 5 + np.exp(-((w - 2.0) / 0.01) ** 2) * 3 + 2.5 * (w == math.pi)
    np.testing.assert_allclose(ptd.peak_frequencies(w, g, 2), [0.5, 2.0], atol=w[1])
    np.testing.assert_allclose(ptd.peak_frequencies(w, g, 3)[2], math.pi)     # an endpoint maximum counts
    noise = ptd.make_noise((4, 256, 1), [0.5], seed=1)
    spec = np.abs(np.fft.rfft(noise[..., 0].numpy(), axis=-1))
    k = np.argmax(spec, axis=-1)
    np.testing.assert_allclose(2 * math.pi * k / 256, 0.5, atol=2 * math.pi / 256)  # the energy sits at w = 0.5
    assert torch.equal(noise, ptd.make_noise((4, 256, 1), [0.5], seed=1))
    x = torch.randn(4, 256, 1, generator=torch.Generator().manual_seed(0))
    y = ptd.perturb(x, noise, 0.3)
    rms = lambda a: a.double().pow(2).mean().sqrt().item()  # noqa: E731
    assert rms(y - x) == pytest.approx(0.3 * rms(x), rel=1e-5)


def test_correlations_and_paired_against_scipy():
    rng = np.random.default_rng(0)
    rows = [{"d_state": r, "bt_pre": float(rng.random()), "bt_post": float(rng.random())} for r in (4, 4, 4, 8, 8, 8)]
    c = exp_bt_init.correlations(rows)
    x, y = np.array([r["bt_pre"] for r in rows]), np.array([r["bt_post"] for r in rows])
    assert c["raw"]["pearson"] == pytest.approx(scipy.stats.pearsonr(x, y).statistic)
    assert c["raw"]["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    xc = x - np.repeat([x[:3].mean(), x[3:].mean()], 3)
    yc = y - np.repeat([y[:3].mean(), y[3:].mean()], 3)
    assert c["within_r"]["pearson"] == pytest.approx(np.corrcoef(xc, yc)[0, 1])
    assert exp_bt_init.correlations(rows[:2])["raw"] is None
    p = E.paired([0.9, 0.8, 0.7], [0.5, 0.9, 0.6])
    assert p["verdict"] == "mixed" and p["n_pos"] == 2 and p["mean"] == pytest.approx(0.4 / 3)
    assert E.paired([1, 2], [0, 1])["verdict"] == "a" and E.paired([0, 1], [1, 2])["verdict"] == "b"
    assert E.fmt_ms([0.5]) == "0.500" and E.fmt_ms([0.5, 0.7]) == "0.600 ± 0.141"


def test_bad_name_and_arguments(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"name must be one of 'bt-init', 'compression', 'ptd-robustness', "
                                         r"'penalty-cost', 'frontier', got 'nope'"):
        experiments.run("nope", out=str(tmp_path))
    with pytest.raises(TypeError, match="name must be a str, got int"):
        experiments.run(3, out=str(tmp_path))
    with pytest.raises(TypeError, match="quick must be a bool, got str"):
        experiments.run("bt-init", out=str(tmp_path), quick="yes")
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "argument name: invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="md_table: a row has 1 cells, the header 2"):
        reporting.md_table(["a", "b"], [["x"]])
    assert re.fullmatch(r"dssm experiment compression --quick", E.command("compression", "docs/experiments", True,
                                                                             "docs/experiments"))


def test_frontier_contents(outputs):
    """Every run has its full model; every reduced arm keeps at most the full states (and the fraction asked,
    but for the one-mode-per-system floor); the reading covers every task and kind."""
    res = json.load(open(os.path.join(outputs, "frontier.json")))
    cfg = res["config"]
    runs = {(r["task"], r["kind"], r["seed"]) for r in res["rows"]}
    assert len(runs) == len(cfg["tasks"]) * len(cfg["kinds"]) * len(cfg["seeds"])
    for run in runs:
        rows = [r for r in res["rows"] if (r["task"], r["kind"], r["seed"]) == run]
        full = [r for r in rows if r["arm"] == "full"]
        assert len(full) == 1
        floor = 2 * (cfg["n_layers"] * (1 if run[1] in ("s5", "lru") else cfg["d_model"]))
        for r in rows:
            assert 0 < r["states"] <= full[0]["states"] and r["seconds"] >= 0
            if r["arm"] in ("after", "last") or (r["arm"] == "penalty" and r["fraction"] < 1):
                assert r["states"] <= max(r["fraction"] * full[0]["states"], floor) + 2
            if r["arm"] == "during":
                assert r["log"][0] == [0, full[0]["states"]] and r["log"][-1][1] == r["states"]
        assert {r["arm"] for r in rows} >= {"full", "after", "last", "penalty", "during", "scratch", "btinit"}
    md = open(os.path.join(outputs, "frontier.md")).read()
    for task, kind, _ in runs:
        assert f"- {task}, {kind} (full" in md


def test_penalty_cost_contents(outputs):
    res = json.load(open(os.path.join(outputs, "penalty-cost.json")))
    cfg = res["config"]
    assert [r["kind"] for r in res["rows"]] == cfg["kinds"]
    for r in res["rows"]:
        assert len(r["times"]["plain"]) == len(r["times"]["penalty"]) == cfg["repeats"]
        assert r["overhead"] == pytest.approx(r["step_penalty_s"] / r["step_s"] - 1)
    md = open(os.path.join(outputs, "penalty-cost.md")).read()
    assert "load average" in md and len(_tables(md)) == 1

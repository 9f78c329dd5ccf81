"""`dssm reduce` with a state budget, every method and every layer kind: the written checkpoint loads and
holds at most the budget; the summary shows the allocation; bad flag combinations are one line naming
the flag."""
import json

import pytest

from dssm_kernels.cli import main, reduced_path
from dssm_kernels.reduction.model import layer_states
from dssm_kernels.workflows import checkpoint
from testing import tiny_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("reduce")
    for layer in ("s4d", "s4", "s5", "lru"):
        tiny_checkpoint(d / f"{layer}.pt", layer=layer)
    return d


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("layer,argv", [
    ("s4d", ["--budget", "24", "--method", "bsp", "--allocate", "last"]),
    ("s4", ["--fraction", "0.5", "--method", "bt"]),
    ("s5", ["--fraction", "0.5", "--method", "tlh2"]),
    ("lru", ["--budget", "8", "--method", "msp", "--allocate", "energy"]),
])
def test_budget_reductions_of_every_kind(folder, tmp_path, capsys, layer, argv):
    out = tmp_path / "small.pt"
    code, text, err = _run(["reduce", folder / f"{layer}.pt", *argv, "--out", out], capsys)
    assert code == 0, err
    report = json.load(open(tmp_path / "small.report.json"))
    model, _, meta = checkpoint.load(str(out))
    states = sum(layer_states(b.layer) for b in model.blocks)
    assert states == report["states_after"] <= report["states_before"]
    if "--budget" in argv:
        assert states <= int(argv[argv.index("--budget") + 1])
    else:
        assert states <= report["states_before"] * 0.5
    assert meta["reduction"]["method"] == argv[argv.index("--method") + 1]
    if layer == "s5":                 # tlh2 fits the task's sequences by default
        assert report["horizon"] == 16
    lines = text.splitlines()
    assert "states" in lines[3] and "modes min/mean/max" in lines[4]


def test_default_names_carry_the_budget_and_rule(folder):
    assert reduced_path("a/m.pt", "bt", None, None, 256, None, "bound").endswith("a/m-bt-b256-bound.pt")
    assert reduced_path("m.pth", "msp", None, None, None, 0.25, "last") == "m-msp-f0.25-last.pt"


@pytest.mark.parametrize("argv,needle", [
    (["--d-state", "4", "--allocate", "last"], "--allocate last splits a --budget or --fraction"),
    (["--budget", "1000"], "--budget 1000 removes nothing"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.5"], "--fraction"),
    (["--budget", "8", "--fraction", "0.5"], "--fraction: not allowed with argument --budget"),
    (["--budget", "24", "--method", "svd"], "--method"),
    (["--tol", "0.1", "--method", "msp", "--budget", "8"], "--budget"),
    (["--budget", "4"], "fewer than one per system"),
])
def test_bad_flags_are_one_line(folder, tmp_path, capsys, argv, needle):
    code, _, err = _run(["reduce", folder / "s4d.pt", *argv, "--out", tmp_path / "x.pt"], capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("dssm reduce: error: ") and needle in last, last


def test_a_long_horizon_reaches_the_closed_form(folder, tmp_path, capsys):
    """--horizon 10**12: the time-limited Gramians' closed form costs O(log horizon), so the flag takes
    horizons far past any sequence (it was capped at 2**20 while they cost O(horizon))."""
    out = tmp_path / "long.pt"
    assert main(["reduce", str(folder / "s4d.pt"), "--d-state", "2", "--horizon", str(10 ** 12), "--out", str(out)]) == 0
    assert checkpoint.load(str(out))[0].blocks[0].layer.d_state == 2
    capsys.readouterr()

"""The dssm command end to end at toy sizes: train -> eval -> reduce -> bench, the demo, and errors."""
import json
import os
import subprocess
import sys

import torch

from dssm_kernels.cli import main
from dssm_kernels.workflows import checkpoint

SMALL = ["--task", "recall", "--layer", "dss", "--d-model", "8", "--d-state", "8", "--epochs", "1", "--no-progress"]


def test_train_eval_reduce_bench(tmp_path, capsys):
    ck = str(tmp_path / "m.pt")
    assert main(["train", *SMALL, "--out", ck, "--task-option", "seq_len=32"]) == 0
    trained = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    model, task, meta = checkpoint.load(ck)
    assert task.seq_len == 32 and len(meta["history"]["val_acc"]) == 1

    assert main(["eval", ck]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["test_acc"] == trained["test_acc"] and row["d_state"] == 8

    small = str(tmp_path / "m4.pt")
    assert main(["reduce", ck, "--d-state", "4", "--method", "bt", "--out", small]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {small} ")
    rep = json.load(open(tmp_path / "m4.report.json"))       # the full report, next to the checkpoint
    assert rep["ssm_params_after"] < rep["ssm_params_before"] and len(rep["report"]["layers"]) == 2
    reduced, _, meta = checkpoint.load(small)
    assert [b.layer.d_state for b in reduced.blocks] == [4, 4] and meta["parent"] == ck
    x = task.test[0][:4]
    with torch.no_grad():  # the saved reduced model runs in all three modes alike
        y = reduced(x)
        torch.testing.assert_close(reduced(x, mode="scan"), y, rtol=1e-4, atol=1e-5)

    assert main(["bench", ck, small, "--repeats", "1", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("| ") >= 3 and small in out


def test_demo_writes_table_json_and_plot(tmp_path):
    out = str(tmp_path / "demo")
    assert main(["demo", *SMALL, "--out", out, "--retrain-epochs", "1", "--ranks", "4", "2",
                 "--retrain-ranks", "2"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert {r["method"] for r in res["reduced"]} == {"bt", "modal", "h2"}
    assert all(0 <= r["test_acc"] <= 1 for r in res["reduced"])
    assert res["retrained"][0]["d_state"] == 2
    assert set(res["timing"]["speedup"]) == {"8", "4", "2"}
    table = open(os.path.join(out, "results.md")).read()
    assert table.count("\n") == 5  # header, rule, full, 4, 2
    assert os.path.getsize(os.path.join(out, "results.png")) > 10_000


def test_errors_are_one_line_and_help_works(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2
    assert "dssm eval: error: checkpoint.load: no checkpoint file at" in capsys.readouterr().err
    assert main(["train", *SMALL[:-1], "--layer", "lstm", "--out", str(tmp_path / "x.pt")]) == 2
    assert "argument --layer: invalid choice: 'lstm'" in capsys.readouterr().err
    for sub in ([], ["demo"], ["train"], ["reduce"], ["eval"], ["bench"], ["experiment"]):
        assert main([*sub, "--help"]) == 0 and "usage: dssm" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "dssm_kernels", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: dssm" in r.stdout

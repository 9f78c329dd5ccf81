"""ONNX export: the whole-sequence forward and the streaming step of every layer kind (reduced models,
token and feature inputs, a block), run by onnxruntime against forward; `dssm export`. Tolerances:
testing.py, "deploy models" (the graphs are float32 evaluations of the same function)."""
import json

import numpy as np
import pytest
import torch

from testing import (DEPLOY_KINDS, classifier_inputs, double_copy, float32_tolerance, outputs_every_position,
                     reduced_classifier, rel_rms, small_classifier)
from dssm_kernels.deploy.onnx import export_onnx, initial_state, onnx_unavailable_reason, state_names, step_path
from dssm_kernels.deploy.plan import plan_model
from dssm_kernels.nn import S4D, ResidualBlock

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(onnx_unavailable_reason() is not None, reason=str(onnx_unavailable_reason()))

OPTIONS = {"s4d": {}, "dss": dict(tokens=True), "s4": {}, "s5": dict(pool="last"), "lru": {}}


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run_steps(session, plan, x: torch.Tensor) -> torch.Tensor:
    """(B, L, n_out): the step graph fed token by token, each call's new state into the next."""
    state = initial_state(plan, x.shape[0])
    names = state_names(plan)
    ys = []
    for t in range(x.shape[1]):
        out = session.run(None, {"x": x[:, t].numpy(), **state})
        ys.append(torch.from_numpy(out[0]))
        state = dict(zip(names, out[1:]))
    return torch.stack(ys, 1)


@pytest.mark.parametrize("kind", DEPLOY_KINDS)
def test_onnx_forward_and_step_equal_forward(kind, tmp_path):
    model = reduced_classifier(kind, **OPTIONS[kind])
    paths = export_onnx(model, tmp_path / "m.onnx", max_length=200)
    assert paths == [str(tmp_path / "m.onnx"), step_path(str(tmp_path / "m.onnx"))]
    fwd, step = _session(paths[0]), _session(paths[1])
    oracle_model = double_copy(model)
    for B, L in ((3, 7), (4, 150)):        # other batch and length than the export's example (2, 16)
        x = classifier_inputs(model, B, L)
        oracle = oracle_model(x if x.dtype == torch.int64 else x.double())
        y = torch.from_numpy(fwd.run(None, {"x": x.numpy()})[0])
        assert rel_rms(y, oracle) <= float32_tolerance(model, x, oracle, last_only=True), (B, L)
    x = classifier_inputs(model, 2, 20)
    oracle = outputs_every_position(oracle_model, x if x.dtype == torch.int64 else x.double())
    assert rel_rms(run_steps(step, plan_model(model), x), oracle) <= float32_tolerance(model, x, oracle)


def test_onnx_metadata_and_state_shapes(tmp_path):
    import onnx
    model = reduced_classifier("s4d")
    path = export_onnx(model, tmp_path / "m.onnx", graph="step")[0]
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["graph"] == "step" and json.loads(meta["d_state"]) == [b.layer.d_state for b in model.blocks]
    shapes = json.loads(meta["state_shapes"])
    sess = _session(path)
    got = {i.name: i.shape for i in sess.get_inputs()}
    for name, shape in shapes.items():
        assert got[name][1:] == shape[1:]
    assert [o.name for o in sess.get_outputs()] == ["y"] + [f"new_{n}" for n in shapes]


def test_onnx_block(tmp_path):
    block = ResidualBlock(S4D(12, 8, seed=0)).eval()
    path = export_onnx(block, tmp_path / "b.onnx", graph="forward")[0]
    x = torch.randn(2, 40, 12, generator=torch.Generator().manual_seed(0))
    oracle = double_copy(block)(x.double())
    y = torch.from_numpy(_session(path).run(None, {"x": x.numpy()})[0])
    assert rel_rms(y, oracle) <= 2 * rel_rms(block(x), oracle) + 1e-6


def test_onnx_s4_refuses_inputs_past_max_length(tmp_path):
    """An S4 forward graph stores its kernel up to max_length: a longer input fails in the runtime."""
    model = small_classifier("s4", d_state=[8, 4])     # a reduced S4 is an S4D: this one keeps its DPLR form
    path = export_onnx(model, tmp_path / "m.onnx", graph="forward", max_length=30)[0]
    sess = _session(path)
    sess.run(None, {"x": classifier_inputs(model, 1, 30).numpy()})
    with pytest.raises(Exception, match="(?i)indices|out of|bounds"):
        sess.run(None, {"x": classifier_inputs(model, 1, 31).numpy()})


def test_export_bad_arguments(tmp_path):
    model = reduced_classifier("s4d")
    with pytest.raises(ValueError, match="graph must be one of"):
        export_onnx(model, tmp_path / "m.onnx", graph="all")
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="does not exist"):
        export_onnx(model, tmp_path / "no" / "m.onnx")
    with pytest.raises(ValueError, match="max_length must be an int"):
        export_onnx(model, tmp_path / "m.onnx", max_length=0)
    with pytest.raises(TypeError, match="model must be a SequenceClassifier"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")


def test_cli_export(tmp_path, capsys):
    from dssm_kernels import tasks
    from dssm_kernels.cli import main
    from dssm_kernels.workflows import checkpoint
    from dssm_kernels.nn import SequenceClassifier
    task = tasks.load("recall", seq_len=16, n_train=8, n_val=4, n_test=4)
    model = SequenceClassifier(n_classes=task.n_classes, vocab_size=task.vocab_size, layer="s4d", d_model=12,
                               d_state=[8, 4], seed=0).eval()
    ckpt = str(tmp_path / "m.pt")
    checkpoint.save(ckpt, model.eval(), task)
    out = str(tmp_path / "m.onnx")
    assert main(["export", ckpt, "--format", "onnx", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"wrote {step_path(out)}" in printed
    x = torch.randint(0, task.vocab_size, (2, 16))
    y = _session(out).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    # float32 through two different graphs (onnxruntime against torch): ~1e-4 of the logits' scale
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.txt")]) == 2
    assert "--out must end in .onnx" in capsys.readouterr().err
    assert main(["export", ckpt, "--format", "tflite", "--out", out]) == 2

"""Checkpoints (dssm_kernels.workflows.checkpoint) as untrusted input: loading runs no code from the file,
checks the config, the task and the weights before it builds anything, and every failure is one line;
checkpoints of the current format written by save() (and by the save() of before these checks) still load."""
import os
import shlex
import zipfile

import pytest
import torch

from dssm_kernels import tasks
from dssm_kernels.cli import main
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.workflows import checkpoint
from testing import TINY_TASK, tiny_checkpoint

@pytest.fixture
def ck(tmp_path):
    return tiny_checkpoint(tmp_path / "m.pt")


def _raw(path) -> dict:
    return torch.load(path, weights_only=True)


def _write(path, obj) -> str:
    torch.save(obj, str(path))
    return str(path)


class _RunsCommand:
    """Unpickling this calls os.system(command): what a hostile .pt does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _one_error_line(err: str, command: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dssm {command}: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["meta", "top", "raw-pickle"])
def test_a_malicious_pickle_runs_nothing(ck, tmp_path, capsys, where):
    """A checkpoint whose unpickling would run a shell command: nothing runs (the marker file the command would
    write never appears), the error is one line, through the library and through eval / reduce / bench."""
    marker = tmp_path / "pwned"
    evil = _RunsCommand(f"echo pwned > {shlex.quote(str(marker))}")
    path = tmp_path / "evil.pt"
    if where == "meta":            # a valid checkpoint with the payload inside: the old format check came too late
        _write(path, {**_raw(ck), "meta": {"note": evil}})
    elif where == "top":
        _write(path, evil)
    else:                          # a bare pickle, not torch.save's zip archive
        import pickle
        path.write_bytes(pickle.dumps(evil))
    with pytest.raises(ValueError) as e:
        checkpoint.load(str(path))
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert not marker.exists()
    for argv in (["eval", str(path)], ["reduce", str(path), "--d-state", "4"], ["bench", str(path)]):
        assert main(argv) == 2
        _one_error_line(capsys.readouterr().err, argv[0])
        assert not marker.exists()


def test_unreadable_files_are_one_line_errors(ck, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pt"
    data = open(ck, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    compressed = tmp_path / "deflated.pt"   # torch.save stores records; a deflated one could be a zip bomb
    with zipfile.ZipFile(ck) as src, zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    not_dict = _write(tmp_path / "list.pt", [1, 2, 3])
    cases = [(text, "not a checkpoint"), (empty, "empty"), (truncated, "not a checkpoint"),
             (compressed, "compressed"), (not_dict, "not a dssm-checkpoint-1 file"), (tmp_path, "no checkpoint file")]
    for path, match in cases:
        with pytest.raises(ValueError, match=match):
            checkpoint.load(str(path))
        assert main(["eval", str(path)]) == 2
        _one_error_line(capsys.readouterr().err, "eval")


def test_checkpoints_of_the_current_format_still_load(tmp_path):
    """A file laid out exactly as save() wrote it before the loader's checks (torch.save of the dict, meta
    with a history and a reduction report of nested plain values) loads with the same weights, config, task
    and meta; so do save()'s own files for every layer kind and for per-layer state sizes (a reduced model)."""
    t = tasks.load("recall", **TINY_TASK)
    model = SequenceClassifier(t.n_classes, vocab_size=t.vocab_size, layer="dss", d_model=4, d_state=[8, 4], seed=3)
    meta = {"history": {"train_loss": [1.4], "val_acc": [0.25], "seconds": [0.1]}, "parent": "full.pt",
            "reduction": {"method": "bt", "d_state": 4, "tol": None,
                          "report": {"layers": [{"hsv": [[1.0, 0.5]], "error_bound": None, "hinf_error": [float("inf")]}]}}}
    path = _write(tmp_path / "old.pt", {"format": "dssm-checkpoint-1", "config": model.current_config(),
                                        "state_dict": model.state_dict(),
                                        "task": {"name": t.name, "options": dict(t.options)}, "meta": meta})
    loaded, task, got_meta = checkpoint.load(path)
    assert loaded.current_config() == model.current_config() and got_meta == meta and not loaded.training
    for k, v in model.state_dict().items():   # the same numbers copied, not recomputed: exact equality
        assert torch.equal(loaded.state_dict()[k], v), k
    assert task.options == t.options and torch.equal(task.test[0], t.test[0])
    for layer in ("s4d", "dss", "s4", "s5"):
        path = tiny_checkpoint(tmp_path / f"{layer}.pt", layer=layer)
        loaded, _, _ = checkpoint.load(path)
        assert loaded.config["layer"] == layer


@pytest.fixture
def no_model_building(monkeypatch):
    """Building the model fails the test: what is checked here must be refused before anything is built."""
    def build(config):
        raise AssertionError("the model was built before the checkpoint was checked")
    monkeypatch.setattr(SequenceClassifier, "from_config", staticmethod(build))


@pytest.mark.parametrize("options, error, match", [
    ({"n_train": 10 ** 12}, ValueError, "n_train \\+ n_val \\+ n_test must be at most 1,000,000"),  # was a 7 TiB allocation
    ({"seq_len": 10 ** 9}, ValueError, "more than the limit"),
    ({"colour": 1}, ValueError, "unknown option.*'colour'"),
    ({"n_test": "5"}, TypeError, "n_test must be an int"),
    ({"n_classes": 10 ** 9}, ValueError, "n_classes must be an int in"),
])
def test_task_options_are_checked_before_anything_is_built(ck, tmp_path, no_model_building, options, error, match):
    raw = _raw(ck)
    raw["task"]["options"].update(options)
    with pytest.raises(error, match=f"its task: .*{match}"):
        checkpoint.load(_write(tmp_path / "bad.pt", raw))


def test_unknown_task_is_refused(ck, tmp_path, no_model_building):
    raw = _raw(ck)
    raw["task"]["name"] = "mnist"
    with pytest.raises(ValueError, match="its task: .*name must be one of"):
        checkpoint.load(_write(tmp_path / "bad.pt", raw))


@pytest.mark.parametrize("change, error, match", [
    ({"d_model": 10 ** 6}, ValueError, "encoder.weight of shape \\(13, 1000000\\), the file holds \\(13, 4\\)"),
    ({"n_classes": 10 ** 6}, ValueError, "decoder.weight of shape"),
    ({"n_layers": 3}, ValueError, "n_layers=3, the file holds weights of 2 block"),
    ({"d_state": [8, 4096]}, ValueError, "d_state=4096 for block 1 needs at least"),
    ({"d_state": 3.5}, TypeError, "d_state must be an int"),
    ({"colour": "red"}, ValueError, "unknown field.*'colour'"),
    ({"dtype": "load"}, ValueError, "dtype must be one of"),
    ({"n_classes": "4"}, TypeError, "n_classes must be an int"),
    ({"layer_kwargs": {"l_max": 10 ** 12}}, ValueError, "l_max'\\] must be an int in"),
    ({"layer_kwargs": {"init": ["a"]}}, TypeError, "layer_kwargs\\['init'\\] must be a plain"),
    ({"seed": -1}, ValueError, "seed must be None or an int"),
])
def test_config_is_checked_against_the_weights_before_building(ck, tmp_path, no_model_building, change, error, match):
    raw = _raw(ck)
    raw["config"].update(change)
    with pytest.raises(error, match=match):
        checkpoint.load(_write(tmp_path / "bad.pt", raw))


def _edit_state(raw, key, value=None, drop=False):
    sd = dict(raw["state_dict"])
    if drop:
        del sd[key]
    else:
        sd[key] = value
    return {**raw, "state_dict": sd}


def test_weights_must_match_the_model_the_config_builds(ck, tmp_path):
    raw = _raw(ck)
    key = "blocks.0.layer.B"
    w = raw["state_dict"][key]
    nan = w.clone()
    nan.view(-1)[0] = float("nan")
    cases = [
        (_edit_state(raw, key, drop=True), ValueError, "missing \\['blocks.0.layer.B'\\]"),
        (_edit_state(raw, "blocks.0.extra", torch.zeros(2)), ValueError, "unexpected \\['blocks.0.extra'\\]"),
        (_edit_state(raw, key, w[:2]), ValueError, f"state_dict\\['{key}'\\] is torch.float32 \\(2, 4, 2\\), the model needs"),
        (_edit_state(raw, key, w.double()), ValueError, "is torch.float64 .* needs torch.float32"),
        (_edit_state(raw, key, nan), ValueError, "holds non-finite values"),
        (_edit_state(raw, key, [1.0, 2.0]), TypeError, "must be a dense tensor"),
        ({k: v for k, v in raw.items() if k != "task"}, ValueError, "missing \\['task'\\]"),
        ({**raw, "extra": 1}, ValueError, "unknown \\['extra'\\]"),
    ]
    for obj, error, match in cases:
        with pytest.raises(error, match=match):
            checkpoint.load(_write(tmp_path / "bad.pt", obj))


def test_save_checks_the_destination_and_leaves_no_partial_file(ck, tmp_path):
    model, task, _ = checkpoint.load(ck)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        checkpoint.save(str(blocker / "m.pt"), model, task)
    with pytest.raises(ValueError, match="is a folder"):
        checkpoint.save(str(tmp_path), model, task)
    checkpoint.save(str(tmp_path / "again.pt"), model, task)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

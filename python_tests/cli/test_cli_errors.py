"""The dssm command on bad input and awkward situations: every numeric flag checked at parse time, errors
of one line naming the flags, output names derived from the file's stem, reductions that remove
nothing refused, checks done before training, modes a model lacks, a closed pipe and Ctrl-C.
The real parser and main(argv) run in-process; a subprocess only where a real process is the point."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dssm_kernels.cli import build_parser, main
from dssm_kernels.workflows import checkpoint
from testing import tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Tiny untrained checkpoints: S4D and S4 (no scan view; reduced, it becomes an S4D)."""
    d = tmp_path_factory.mktemp("cli")
    tiny_checkpoint(d / "m.pt")
    tiny_checkpoint(d / "s4.pt", layer="s4")
    return d


@pytest.fixture
def no_training(monkeypatch):
    """Training fails the test: what is checked here must be refused before any training starts."""
    from dssm_kernels.workflows import training

    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(training, "fit", fit)


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, command, *needles):
    """Exit 2 and a last line `dssm COMMAND: error: ...` holding each needle; no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"dssm {command}: error: "), err
    for n in needles:
        assert n in last, (n, last)


TRAIN = ["train", "--task", "recall", "--d-model", "4", "--d-state", "4", "--epochs", "1", "--no-progress"]


@pytest.mark.parametrize("argv, flag", [
    (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "x"], "--lr"),
    (["--epochs", "0"], "--epochs"), (["--d-state", "7"], "--d-state"), (["--d-state", "0"], "--d-state"),
    (["--d-model", "0"], "--d-model"), (["--d-model", "1000000000"], "--d-model"), (["--n-layers", "0"], "--n-layers"),
    (["--seed", "-1"], "--seed"), (["--layer", "lstm"], "--layer"), (["--task", "mnist"], "--task"),
    (["--task-option", "seq_len"], "--task-option"),
])
def test_train_flags_are_checked_at_parse_time(tmp_path, capsys, no_training, argv, flag):
    code, _, err = run([*TRAIN, *argv, "--out", tmp_path / "m.pt"], capsys)
    assert_usage_error(code, err, "train", f"argument {flag}")


@pytest.mark.parametrize("command, argv, flag", [
    ("bench", ["--batch", "-3"], "--batch"), ("bench", ["--repeats", "0"], "--repeats"),
    ("bench", ["--modes", "fast"], "--modes"),
    ("reduce", ["--d-state", "3"], "--d-state"), ("reduce", ["--d-state", "0"], "--d-state"),
    ("reduce", ["--tol", "0"], "--tol"), ("reduce", ["--tol", "-1"], "--tol"), ("reduce", ["--tol", "inf"], "--tol"),
    ("reduce", ["--d-state", "4", "--horizon", "0"], "--horizon"),
    ("reduce", ["--d-state", "4", "--method", "foo"], "--method"),
    ("demo", ["--ranks", "3"], "--ranks"), ("demo", ["--time-repeats", "0"], "--time-repeats"),
    ("demo", ["--methods", "foo"], "--methods"), ("demo", ["--retrain-epochs", "0"], "--retrain-epochs"),
])
def test_other_flags_are_checked_at_parse_time(folder, tmp_path, capsys, no_training, command, argv, flag):
    target = [] if command == "demo" else [folder / "m.pt"]
    extra = ["--out", tmp_path / "demo"] if command == "demo" else []
    code, _, err = run([command, *target, *argv, *extra], capsys)
    assert_usage_error(code, err, command, f"argument {flag}")


def test_reduce_names_come_from_the_stem_and_keep_the_tolerance(folder, tmp_path, capsys):
    nested = tmp_path / "a" / "exp.pt"
    nested.mkdir(parents=True)
    tiny_checkpoint(nested / "m.pt")
    assert run(["reduce", nested / "m.pt", "--d-state", "4"], capsys)[0] == 0
    assert (nested / "m-bt4.pt").is_file() and (nested / "m-bt4.report.json").is_file()
    assert not (tmp_path / "a" / "exp").exists()             # ".pt" was stripped from the whole path
    tiny_checkpoint(tmp_path / "model.pth")
    assert run(["reduce", tmp_path / "model.pth", "--d-state", "4", "--method", "modal"], capsys)[0] == 0
    assert (tmp_path / "model-modal4.pt").is_file()            # not "modelh-..."
    tiny_checkpoint(tmp_path / "t.pt")
    for tol in ("20", "50"):                                    # each tolerance its own file, none overwritten
        assert run(["reduce", tmp_path / "t.pt", "--tol", tol], capsys)[0] == 0
    for tol in ("20", "50"):
        _, _, meta = checkpoint.load(str(tmp_path / f"t-bt-tol{tol}.pt"))
        assert meta["reduction"]["tol"] == float(tol)


def test_reduce_refuses_to_overwrite_its_input(folder, tmp_path, capsys, monkeypatch):
    src = tmp_path / "m.pt"
    tiny_checkpoint(src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (str(src), "m.pt", "./m.pt", os.path.join("..", tmp_path.name, "m.pt")):
        code, _, err = run(["reduce", "m.pt", "--d-state", "4", "--out", out], capsys)
        assert_usage_error(code, err, "reduce", "--out", "is the input checkpoint")
    assert src.read_bytes() == before


def test_a_reduction_that_removes_nothing_is_an_error(folder, tmp_path, capsys):
    """A copy named as a reduction, with "layers": [], would tell a script that the model was compressed: exit 2,
    nothing written, the message says what to change."""
    ck = folder / "m.pt"
    for argv, needles in ((["--d-state", "8"], ["--d-state 8 removes nothing", "d_state 8, 8"]),
                          (["--d-state", "16"], ["--d-state 16 removes nothing"]),
                          (["--tol", "1e-12"], ["--tol 1e-12 removes nothing", "larger --tol"])):
        out = tmp_path / "r.pt"
        code, _, err = run(["reduce", ck, *argv, "--out", out], capsys)
        assert_usage_error(code, err, "reduce", *needles)
        assert not out.exists() and not (tmp_path / "r.report.json").exists()


def test_reduce_prints_a_short_summary_and_writes_the_report(folder, tmp_path, capsys):
    out = tmp_path / "small.pt"
    code, text, _ = run(["reduce", folder / "m.pt", "--d-state", "4", "--out", out], capsys)
    assert code == 0
    lines = text.strip().splitlines()
    assert len(lines) <= 10, text
    report = json.load(open(tmp_path / "small.report.json"))
    assert lines[0].startswith(f"wrote {out} ") and lines[1] == f"full report: {tmp_path / 'small.report.json'}"
    assert f"{report['test_acc_before']:.3f} -> {report['test_acc_after']:.3f}" in lines[2]
    assert f"{report['ssm_params_before']} -> {report['ssm_params_after']}" in lines[3]
    layers = report["report"]["layers"]
    assert [ln.split()[0] for ln in lines[5:]] == [r["name"] for r in layers] == ["blocks.0.layer", "blocks.1.layer"]
    for ln, r in zip(lines[5:], layers):   # the table shows the JSON's maxima, rounded to 3 digits
        bound, hinf = float(ln.split()[4]), float(ln.split()[5])
        assert bound == pytest.approx(max(r["error_bound"]), rel=5e-3)
        assert hinf == pytest.approx(max(r["hinf_error"]), rel=5e-3)
        assert hinf <= bound          # BT's bound holds
    small, _, _ = checkpoint.load(str(out))
    assert report["ssm_params_after"] == checkpoint.ssm_parameter_count(small)


@pytest.mark.parametrize("argv, needles", [
    (["--tol", "1", "--method", "h2"], ["--tol needs --method bt or modal"]),
    (["--d-state", "4", "--tol", "1"], ["argument --tol: not allowed with argument --d-state"]),
    ([], ["one of the arguments --budget --fraction --d-state --tol is required"]),
])
def test_reduce_errors_name_the_flags(folder, tmp_path, capsys, argv, needles):
    code, _, err = run(["reduce", folder / "m.pt", *argv, "--out", tmp_path / "x.pt"], capsys)
    assert_usage_error(code, err, "reduce", *needles)
    assert "d_state" not in err and "tol=" not in err      # the library's argument names


def test_reducing_an_s4_checkpoint_gives_s4d_layers(folder, tmp_path, capsys):
    """An S4 (DPLR) is reduced by balancing its dense channels and held as an S4D (bilinear): the reduced
    checkpoint loads, and gains the scan view the S4 lacked."""
    code, out, err = run(["reduce", folder / "s4.pt", "--d-state", "4", "--out", tmp_path / "x.pt"], capsys)
    assert code == 0, err
    model, _, _ = checkpoint.load(str(tmp_path / "x.pt"))
    assert all(type(b.layer).__name__ == "S4D" and b.layer.disc == "bilinear" for b in model.blocks)


def test_bench_times_only_the_modes_every_model_has(folder, capsys):
    ck, s4 = folder / "m.pt", folder / "s4.pt"
    code, out, err = run(["bench", s4, ck, "--repeats", "1", "--batch", "2"], capsys)
    assert code == 0, err
    assert "scan left out" in out and "s4.pt" in out
    head = next(ln for ln in out.splitlines() if ln.startswith("| checkpoint"))
    assert "conv ms" in head and "step ms" in head and "scan ms" not in head
    code, _, err = run(["bench", ck, s4, "--modes", "scan", "--repeats", "1"], capsys)
    assert_usage_error(code, err, "bench", "--modes scan", "s4.pt", "no scan view")


def test_bench_refuses_what_it_cannot_time(folder, tmp_path, capsys):
    ck = folder / "m.pt"
    code, _, err = run(["bench", ck, "--batch", "9"], capsys)            # the test set holds 8
    assert_usage_error(code, err, "bench", "--batch 9", "8 test sequences")
    other = tiny_checkpoint(tmp_path / "other.pt", n_noise=20)          # another vocabulary: one batch cannot feed both
    code, _, err = run(["bench", ck, other], capsys)
    assert_usage_error(code, err, "bench", "other.pt reads", "one batch")


def _check_destination(argv, command, tmp_path, capsys):
    """`argv --out X` is refused, naming --out, for X under a file, X a folder and X unwritable."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out, needle in ((blocker / "out.pt", "not a folder"), (tmp_path, "is a folder"),
                        ("/proc/dssm-test/out.pt", "cannot write")):
        code, _, err = run([*argv, "--out", out], capsys)
        assert_usage_error(code, err, command, "--out", needle)


def test_train_checks_its_destination_before_training(tmp_path, capsys, no_training):
    _check_destination(TRAIN, "train", tmp_path, capsys)


def test_reduce_checks_its_destination_before_reducing(folder, tmp_path, capsys, monkeypatch):
    from dssm_kernels import reduction

    def never(*a, **k):
        raise AssertionError("the reduction started")
    monkeypatch.setattr(reduction, "reduce_model", never)
    _check_destination(["reduce", folder / "m.pt", "--d-state", "2"], "reduce", tmp_path, capsys)


def test_train_task_options_name_the_flag(tmp_path, capsys, no_training):
    for option, needle in (("colour=1", "unknown option"), ("seq_len=1", "seq_len must be"),
                           ("seed=3", "give the seed with --seed"), ("n_train=1000000000000", "at most 1,000,000")):
        code, _, err = run([*TRAIN, "--task-option", option, "--out", tmp_path / "m.pt"], capsys)
        assert_usage_error(code, err, "train", "--task-option", needle)


# (--layer s5 and s4 were refused here after training; every layer kind is reducible now, and
# test_demo_takes_every_layer_kind checks that the demo accepts them before it trains)
@pytest.mark.parametrize("argv, needles", [
    (["--d-state", "8", "--ranks", "8", "4"], ["--ranks", "below --d-state 8, got 8"]),
    (["--d-state", "8", "--ranks", "4", "--retrain-ranks", "16"], ["--retrain-ranks", "got 16"]),
])
def test_demo_checks_everything_before_training(tmp_path, capsys, no_training, argv, needles):
    code, _, err = run(["demo", "--out", tmp_path / "demo", "--no-progress", *argv], capsys)
    assert_usage_error(code, err, "demo", *needles)


@pytest.mark.parametrize("layer", ["s4d", "dss", "s4", "s5", "lru"])
def test_demo_takes_every_layer_kind(tmp_path, layer):
    """The demo's checks (run before any training) accept every layer kind: each is reducible."""
    from dssm_kernels.workflows.demo import check_arguments
    check_arguments(str(tmp_path / "demo"), task="digits", layer=layer, d_model=8, d_state=8, n_layers=1, epochs=1,
                    retrain_epochs=1, ranks=[4, 2], retrain_ranks=[2], methods=["bt", "h2"], lr=0.01, seed=0,
                    time_batch=4, time_repeats=1)


def test_demo_and_experiment_check_their_folder_first(tmp_path, capsys, no_training, monkeypatch):
    from dssm_kernels.workflows import experiments

    def never(*a, **k):
        raise AssertionError("the experiment started")
    monkeypatch.setattr(experiments, "run", never)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for command in (["demo"], ["experiment", "compression"]):
        code, _, err = run([*command, "--out", blocker / "sub"], capsys)
        assert_usage_error(code, err, command[0], "--out", "not a folder")


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    from dssm_kernels.workflows import training

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "fit", interrupted)
    try:
        code, _, err = run([*TRAIN, "--task-option", "n_train=8", "--out", tmp_path / "m.pt"], capsys)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")
    assert code == 130 and err == "dssm train: interrupted\n"
    assert not (tmp_path / "m.pt").exists()


def _env():
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigint_during_training_in_a_real_process(tmp_path):
    """Ctrl-C (SIGINT to the process) while it trains: exit 130, one line, no traceback.

    The child starts with SIGINT's default action, as a command typed at a terminal does: a suite run as
    a background job (`bash .ci/run &`) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the child rightly trained on (the fresh-clone CI run showed it). Should
    the process not end, SIGABRT makes faulthandler print where it is, and the failure shows it."""
    p = subprocess.Popen([sys.executable, "-u", "-m", "dssm_kernels", *TRAIN, "--epochs", "100000", "--task-option",
                          "n_train=64", "--task-option", "seq_len=16", "--out", str(tmp_path / "m.pt")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**_env(), "PYTHONFAULTHANDLER": "1"}, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stdout.readline()                    # the task line is printed just before training starts
        assert first.startswith("recall:"), first + p.stderr.read()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=30)
            pytest.fail(f"no exit 120 s after SIGINT; where it was:\n{err[-4000:]}")
    finally:
        p.kill()
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "dssm train: interrupted", err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["eval", "reduce"])
def test_a_closed_pipe_ends_quietly(folder, command):
    """The reader leaves (`dssm eval ... | head` once head has its lines): no traceback, the SIGPIPE status."""
    argv = [str(folder / "m.pt")] + (["--d-state", "2", "--out", str(folder / "piped.pt")] if command == "reduce" else [])
    p = subprocess.Popen([sys.executable, "-m", "dssm_kernels", command, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    p.stdout.close()                                   # nobody reads: the first write fails with EPIPE
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert p.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_every_command_and_option_is_described(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(subparsers.choices) == {"demo", "train", "reduce", "eval", "bench", "experiment", "export"}
    for name, sub in subparsers.choices.items():
        assert sub.description and len(sub.description) > 40, name
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            positional_or_required = not action.option_strings or action.required
            assert positional_or_required or "default" in action.help, (name, action.dest, action.help)
        assert main([name, "--help"]) == 0
        page = capsys.readouterr().out
        assert page.startswith(f"usage: dssm {name}") and sub.description.split()[0] in page


def test_time_models_refuses_what_it_cannot_time(folder):
    """The library under bench: no rounds (was 'no median for empty data'), unknown or no modes."""
    from dssm_kernels.workflows.timing import supported_modes, time_models
    model, task, _ = checkpoint.load(str(folder / "m.pt"))
    x = task.test[0][:2]
    for kw, match in (({"repeats": 0}, "repeats must be an int >= 1"), ({"modes": ("fast",)}, "modes must be"),
                      ({"modes": ()}, "modes must be")):
        with pytest.raises(ValueError, match=match):
            time_models({"m": model}, x, **kw)
    s4, _, _ = checkpoint.load(str(folder / "s4.pt"))
    assert supported_modes(model, x) == ("conv", "scan", "step", "decode")
    assert supported_modes(s4, x) == ("conv", "step", "decode")

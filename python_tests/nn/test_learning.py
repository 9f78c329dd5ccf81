"""Training check: a 2-layer S4D and a 2-layer DSS learn the built-in recall task.

recall (dssm_kernels.tasks.recall): the class token is at position 0 of L = 64 and every later position
is label-independent noise, so any model whose output depends on a window of fewer than L positions
ending at the last one is at chance (1/4; python_tests/tasks/test_tasks.py checks this property of the data).
The classifiers read their output at the last position only (pool="last"), so reaching test accuracy
>= 0.9 means carrying the class across all 63 steps in the SSM state.
"""
import time

import pytest

from dssm_kernels import tasks
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.workflows.training import accuracy, fit


@pytest.mark.parametrize("layer", ["s4d", "dss"])
def test_two_layer_model_learns_long_memory(layer):
    task = tasks.load("recall", seed=0, seq_len=64, n_train=2000, n_val=200, n_test=500)
    model = SequenceClassifier(task.n_classes, vocab_size=task.vocab_size, layer=layer, d_model=16, d_state=16,
                               n_layers=2, pool="last", seed=0)
    before = accuracy(model, task.test)
    start = time.perf_counter()
    fit(model, task, epochs=6, lr=1e-2, batch_size=64, seed=0)
    seconds = time.perf_counter() - start
    after = accuracy(model, task.test)
    print(f"{layer}: test accuracy {before:.3f} -> {after:.3f} in {seconds:.1f} s")
    assert before < 0.4  # untrained: near chance (0.25)
    assert after >= 0.9   # the time is printed, not asserted: a loaded machine may take several times longer

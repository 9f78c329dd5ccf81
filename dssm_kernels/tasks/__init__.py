"""Built-in sequence classification tasks: generated, or read from a file a registry package ships.

Nothing is downloaded. Each task is seeded and deterministic (the same arguments give identical
tensors) and comes with train / validation / test splits.

    names() -> ("listops", "digits", "recall", "ucr")
    load(name, *, seed=0, n_train=None, n_val=None, n_test=None, **options) -> Task
    check(name, **the same arguments)       # load()'s argument checks alone: nothing generated or allocated

| name    | inputs                      | L (default)          | classes | options (defaults)                                   |
|---------|-----------------------------|----------------------|---------|------------------------------------------------------|
| listops | tokens, vocab 16            | max_length (256)     | 10      | max_length 256, min_length 32, max_depth 10, max_args 10 |
| digits  | real, d_input 1             | 64 upsample^2 (256)  | 10      | upsample 2, interpolation "bilinear" / "nearest"      |
| recall  | tokens, vocab 1 + K + noise | seq_len (64)         | K (4)   | seq_len 64, n_classes 4, n_noise 8, max_position 0     |
| ucr     | real, d_input = channels    | the data set's       | the set's | dataset "ArrowHead" (one of tasks.ucr.BUNDLED)       |

n_train / n_val / n_test of None take each task's default sizes (listops 2000 / 250 / 250, digits the
rest / 180 / 360 of its 1797 images, recall 2000 / 500 / 500, ucr the rest / 20% of the archive's train
split / its whole test split). A task holds at most 1,000,000 sequences
and 2**27 input values over its splits (tasks._common.MAX_SAMPLES, MAX_VALUES): options can come from a
file (a checkpoint), so sizes are bounded before anything is allocated. Each module's docstring
(tasks.listops, tasks.digits, tasks.recall, tasks.ucr) states its generation procedure; ucr reads the
UCR / UEA data sets the aeon wheel ships, with aeon's loader.

Example:
    >>> from dssm_kernels import tasks
    >>> task = tasks.load("recall", n_train=8, n_val=2, n_test=2)
    >>> task.describe()
    'recall: 4 classes, tokens (vocab 13), L=64; train 8 / val 2 / test 2'
    >>> x, y = task.train
    >>> x.shape, x.dtype, y.shape
    (torch.Size([8, 64]), torch.int64, torch.Size([8]))
"""
from __future__ import annotations

from dssm_kernels.tasks import digits, listops, recall, ucr
from dssm_kernels._validate import check_int
from dssm_kernels.tasks._common import Task

__all__ = ["Task", "names", "check", "load"]

_REGISTRY = {"listops": listops, "digits": digits, "recall": recall, "ucr": ucr}


def names() -> tuple[str, ...]:
    """The names load() accepts."""
    return tuple(_REGISTRY)


def load(name: str, *, seed: int = 0, n_train: int | None = None, n_val: int | None = None,
         n_test: int | None = None, **options) -> Task:
    """Build task `name` with the given seed, split sizes (None: the task's default) and options.

    `load(task.name, **task.options)` rebuilds a task exactly. Unknown names or options,
    out-of-range values and sizes past the bounds raise ValueError naming the argument; wrong types
    raise TypeError. All of it is checked before anything is generated.
    """
    module, sizes, opts = _checked(name, seed, (n_train, n_val, n_test), options)
    return module.build(seed, *sizes, **opts)


def check(name: str, *, seed: int = 0, n_train: int | None = None, n_val: int | None = None,
          n_test: int | None = None, **options) -> None:
    """Raise what load() with these arguments would raise for them, generating and allocating nothing:
    for arguments that come from a file (a checkpoint's task) before anything else is built."""
    _checked(name, seed, (n_train, n_val, n_test), options)


def _checked(name, seed, sizes, options):
    """(task module, split sizes resolved, options with defaults) after every check."""
    if not isinstance(name, str):
        raise TypeError(f"tasks.load: name must be a str, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"tasks.load: name must be one of {', '.join(map(repr, _REGISTRY))}, got {name!r}")
    module = _REGISTRY[name]
    where = f"tasks.load({name!r})"
    unknown = sorted(set(options) - set(module.DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; "
                         f"accepted: {', '.join(module.DEFAULTS)}")
    check_int(where, "seed", seed, 0)
    sizes = [d if n is None else n for n, d in zip(sizes, module.SPLITS)]
    for arg, n, least in zip(("n_train", "n_val", "n_test"), sizes, (1, 0, 0)):
        if n is not None:
            check_int(where, arg, n, least)
    opts = {**module.DEFAULTS, **options}
    return module, module.check(*sizes, **opts), opts

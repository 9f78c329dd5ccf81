"""The workflows behind the `dssm` command: checkpoints, inference timing, the demo and the seed
papers' experiments. Each is a plain function the CLI calls and tests can call too."""

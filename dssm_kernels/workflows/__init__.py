"""The workflows behind the `dssm` command: training (training.fit, accuracy; in one process or data-parallel
over several, distributed), checkpoints, inference
timing, the demo and the seed papers' experiments, and what they show and write (reporting: progress
bars, JSON, Markdown tables, plots, the machine). Each is a plain function the CLI calls and tests can
call too."""

"""The sub-commands of the ``physnode`` command line, one module each.

* :mod:`physnode.commands.demo` — ``physnode demo``: the ACA paper's three-body orbit, solved and plotted;
* :mod:`physnode.commands.data` — ``physnode data list|make|show``: the dataset zoo and trajectory files;
* :mod:`physnode.commands.bench` — ``physnode bench list|all|NAME``: the benchmarks of :mod:`physnode.bench`;
* :mod:`physnode.commands.fit` — ``physnode fit three-body`` (the ACA paper's experiment) and
  ``physnode fit CONFIG.toml`` (a user's own model and data);
* :mod:`physnode.commands.forecast` — ``physnode forecast``: predictions of a fitted model to a ``.nc`` file.

Each module has ``main(argv) -> int`` and raises on error: :class:`~physnode.commands._cli.UsageError` for bad
arguments (exit code 2), ``ValueError`` / ``OSError`` / solver errors when the command cannot run (exit code 1);
:mod:`physnode.cli` prints the message as one line. Sizes, devices and output folders are checked before any
long computation.
"""

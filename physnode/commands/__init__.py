"""Sub-commands of the ``physnode`` command line that run a workflow end to end.

* :mod:`physnode.commands.fit` — ``physnode fit three-body`` (the ACA paper's experiment) and
  ``physnode fit CONFIG.toml`` (a user's own model and data);
* :mod:`physnode.commands.forecast` — ``physnode forecast``: predictions of a fitted model to a ``.nc`` file.

Each module has ``main(argv) -> int``; errors are raised as ``ValueError`` / ``OSError`` with a message that
:mod:`physnode.cli` prints as one line.
"""

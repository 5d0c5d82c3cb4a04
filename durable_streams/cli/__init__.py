"""The ``durable-streams`` command line (``pip install 'aio-durable-streams[cli]'``).

Commands: ``create``, ``append``, ``read``, ``tail``, ``head``, ``close``,
``delete`` and ``serve``; exit codes in :data:`EXIT_CODES`. Built with Click
(and Rich for terminals) on the async API; importing it loads neither the SDK's
dependencies nor Rich, so ``durable-streams --help`` starts fast.

Example::

    from durable_streams.cli import main

    main(["tail", "-f", "http://127.0.0.1:4437/v1/stream/chat"])
"""

from ._app import cli, main
from ._conventions import EXIT_CODES, exit_code_for

__all__ = ["EXIT_CODES", "cli", "exit_code_for", "main"]

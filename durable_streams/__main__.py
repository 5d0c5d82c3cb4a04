"""``python -m durable_streams``: the ``durable-streams`` command line."""

from durable_streams.cli import main

if __name__ == "__main__":
    main()

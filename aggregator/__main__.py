"""``python -m aggregator`` and the ``aggregator`` console script.

Deliberately tiny: the parse worker processes are spawned, and a spawned process first
imports the module its parent was started from.  Importing the CLI here, at module level,
would load the whole application into every worker.
"""


def main() -> None:
    from aggregator.cli import main as run_cli  # noqa: PLC0415 -- see the module docstring

    run_cli()


if __name__ == "__main__":
    main()

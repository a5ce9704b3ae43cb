"""``python -m aggregator`` runs the same command as ``aggregator``."""

from aggregator.cli import main

main()

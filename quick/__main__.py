"""``python -m quick`` runs the command-line interface."""

from quick.cli import main

main()

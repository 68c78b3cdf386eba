"""``python -m inboxd`` runs the same command line as ``inboxd``."""

from inboxd.cli.main import main

main()

"""``python -m inboxd`` runs the same command line as ``inboxd``."""

from inboxd.cli import main

main()

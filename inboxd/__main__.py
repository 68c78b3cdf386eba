"""``python -m inboxd`` runs the same command line as ``inboxd``."""

if __name__ == "__main__":  # not when a helper process imports this module (inboxd/stages/prepare.py)
    from inboxd.cli.main import main

    main()

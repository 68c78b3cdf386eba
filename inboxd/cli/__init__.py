"""The ``inboxd`` command and its subcommands."""

"""inboxd: a shared support mailbox turned into a help desk."""

__version__ = "0.1.0"

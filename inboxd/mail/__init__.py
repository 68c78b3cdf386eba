"""Network I/O to mail servers (IMAP in, SMTP out) and the composition of outgoing messages."""

"""What inboxd writes to people: the acknowledgement, agent notifications, and their templates."""

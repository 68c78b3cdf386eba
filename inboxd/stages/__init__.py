"""The per-message handlers that turn stored mail into ticket changes and queued mail."""

"""The database: every SQL statement of inboxd lives in this package."""

"""The serve side of both directions: sidecar events into mailboxes (`dispatch`), outboxes
through the sidecars (`outbound`), and what keeps both durable while Redis does not answer."""

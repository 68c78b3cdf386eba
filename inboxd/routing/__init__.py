"""Who answers a ticket: routes, the agent directory and the assignment decision."""

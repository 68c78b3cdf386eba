"""Business time, calendars, the SLA clocks, and the watch that alerts before a clock runs out."""

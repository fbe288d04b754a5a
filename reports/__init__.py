"""hvsim.reports: read event logs and summaries; never run a simulation."""

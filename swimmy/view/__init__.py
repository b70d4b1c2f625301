"""What people look at (SPEC §7): the strategy report, the dashboard, and the foreground story of `swimmy run`."""

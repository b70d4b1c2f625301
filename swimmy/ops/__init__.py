"""What operators read from outside the process: typed figures, snapshot files, /metrics, systemd's notify
protocol. Imports nothing above telemetry."""

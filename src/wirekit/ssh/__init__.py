"""SSH tunnels and the embedded server (the only place that imports asyncssh)."""

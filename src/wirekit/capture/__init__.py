"""Live capture and recording of relayed traffic."""

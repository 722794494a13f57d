"""TLS with secure defaults: contexts, certificates, chain inspection, verdicts."""

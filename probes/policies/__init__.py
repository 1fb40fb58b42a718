"""The shipped hardening policies (YAML, package data): see docs/probes/hardening.md."""

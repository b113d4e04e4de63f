"""Facts about the machine a run is on: provenance, GPUs, Apple Silicon."""

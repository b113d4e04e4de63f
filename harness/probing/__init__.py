"""Running probes: the engine pool (session), the run context and the pytest plugin."""

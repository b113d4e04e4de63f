"""Engine builds that infercheck makes itself and caches between runs."""

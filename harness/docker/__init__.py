"""Everything Docker: container specs, the daemon, images, the container launcher and its reaper.

`specs` needs no Docker SDK (doctor and the engine listing read specs on hosts without it); the
other modules import the `docker` package.
"""

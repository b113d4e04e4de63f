"""`python -m harness.docker.build ENGINE`: build (Dockerfile) or pull every image of an engine's container specs.

The nightly job runs it before probing, so a column whose image is built here (Fastgen, ExLlamaV2)
is measured instead of reading "not measured", and a failed build fails its own step with one line.
"""

from __future__ import annotations

import sys

from harness.docker.daemon import DockerUnavailable, connect
from harness.docker.images import ImageBuildError, ImageUnavailable, ensure_image
from harness.docker.specs import ContainerSpec, all_specs


def engine_specs(engine: str) -> list[ContainerSpec]:
    """Every spec written for `engine` (a probe run picks one of them)."""
    return [spec for spec in all_specs() if spec.engine.lower() == engine.lower()]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.docker.build ENGINE", file=sys.stderr)
        return 2
    specs = engine_specs(argv[1])
    if not specs:
        print(f"no container spec for engine {argv[1]!r}", file=sys.stderr)
        return 2
    try:
        client = connect().client
        for spec in specs:
            image = ensure_image(client, spec, pull=True)
            print(f"{spec.name}: {spec.image} ready ({image.id[:19]})")
    except (DockerUnavailable, ImageUnavailable, ImageBuildError) as exc:
        print(f"cannot make the images of {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

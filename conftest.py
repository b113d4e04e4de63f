"""Root pytest glue: the infercheck plugin (options --engine, --base-url, --results-dir; fixtures)."""

pytest_plugins = ["harness.probing.plugin"]

"""The `infercheck` command line and its command back-ends."""

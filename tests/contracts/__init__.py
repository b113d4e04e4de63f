"""Contract checks of the adapters against the engines' own argument parsers and request models."""

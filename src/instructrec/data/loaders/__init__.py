"""Loaders: one small module per source format, each returning a `Dataset`."""

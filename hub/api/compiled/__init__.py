"""Compiled execution: list queries answered without graphql-core's generic executor."""

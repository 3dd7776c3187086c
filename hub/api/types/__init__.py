"""Strawberry types. Roots are ORM rows; related objects come through the request's loaders."""

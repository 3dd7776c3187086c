"""The GraphQL layer: strawberry types, resolvers and loaders over the domain services."""

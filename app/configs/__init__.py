"""Training configuration: model catalog, parameter schema, base configs and the resolver."""

"""The loader Lambda: builds and publishes an index bundle from a catalog in the artifacts bucket."""

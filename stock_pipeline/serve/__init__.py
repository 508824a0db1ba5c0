"""The HTTP query API and the live dashboard: a FastAPI app that reads the warehouse."""

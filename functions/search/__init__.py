"""The search Lambda: FastAPI app behind API Gateway (HTTP API), wrapped by Mangum."""

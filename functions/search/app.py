"""Search Lambda entry point: the search API app and `handler = Mangum(app)`, instrumented.

Handler name for the CDK stack and the Dockerfile: `search.app.handler`. The routes live in
moodboard.search_routes; nothing heavy happens at import (the model and index load on first use).
"""

from __future__ import annotations

from mangum import Mangum
from moodboard.observability import API_GATEWAY_HTTP, instrument
from moodboard.search_routes import create_search_app

app = create_search_app()
handler = instrument(Mangum(app, lifespan="off"), function="search", correlation_path=API_GATEWAY_HTTP)

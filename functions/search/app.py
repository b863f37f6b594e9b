"""Search Lambda entry point: the search API app and `handler = Mangum(app)`, instrumented.

Handler name for the CDK stack and the Dockerfile: `search.app.handler`. The routes live in
moodboard.search_routes. With MOODBOARD_PRELOAD set (the stack sets it) the model and the current
index load here, at import, in the Lambda's init phase (moodboard.runtime.preload_at_init);
otherwise on first use.
"""

from __future__ import annotations

from mangum import Mangum
from moodboard.observability import API_GATEWAY_HTTP, instrument
from moodboard.runtime import preload_at_init
from moodboard.search_routes import create_search_app
from moodboard.settings import get_settings

app = create_search_app()
handler = instrument(Mangum(app, lifespan="off"), function="search", correlation_path=API_GATEWAY_HTTP)
preload_at_init(get_settings())

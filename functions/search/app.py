"""Search Lambda entry point: the search API app and `handler = Mangum(app)`, instrumented.

Handler name for the CDK stack and the Dockerfile: `search.app.handler`. The routes live in
moodboard.search_routes. With MOODBOARD_PRELOAD set (the stack sets it) the model and the current
index load here, at import, in the Lambda's init phase; otherwise on first use. A preload that fails
is logged and left to the first request, which then answers with the error (503 with no index yet).
"""

from __future__ import annotations

import logging

from mangum import Mangum
from moodboard.errors import MoodboardError
from moodboard.observability import API_GATEWAY_HTTP, instrument
from moodboard.runtime import get_runtime
from moodboard.search_routes import create_search_app
from moodboard.settings import get_settings

logger = logging.getLogger(__name__)

app = create_search_app()
handler = instrument(Mangum(app, lifespan="off"), function="search", correlation_path=API_GATEWAY_HTTP)

settings = get_settings()
if settings.preload:
    try:
        get_runtime(settings).preload()
    except MoodboardError as exc:
        logger.warning("preload failed, loading on first request instead: %s", exc.message)

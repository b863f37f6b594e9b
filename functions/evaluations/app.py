"""Evaluations Lambda entry point: the evaluations API app and `handler = Mangum(app)`, instrumented.

Handler name for the CDK stack: `evaluations.app.handler`. The routes live in
moodboard.evaluation_routes.
"""

from __future__ import annotations

from mangum import Mangum
from moodboard.evaluation_routes import create_evaluations_app
from moodboard.observability import API_GATEWAY_HTTP, instrument

app = create_evaluations_app()
handler = instrument(Mangum(app, lifespan="off"), function="evaluations", correlation_path=API_GATEWAY_HTTP)

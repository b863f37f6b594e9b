"""The team page's catalog upload (POST /admin/catalog-uploads) in the stack: the artifacts bucket
answers the browser's presigned POST from the site's origin only (CORS), the evaluations role may
put objects under uploads/catalogs/ and nowhere else but CURRENT, the S3 trigger does not watch the
uploads, and the load steps may read them."""

from __future__ import annotations

from moodboard.artifacts import CURRENT_KEY
from moodboard.catalog_uploads import CATALOG_KEY_PREFIXES, UPLOAD_PREFIX

from infra_cdk import functions as infra_functions
from tests.infra.conftest import Synth
from tests.infra.test_stack import s3_prefixes


def test_the_uploads_prefix_is_the_runtime_one_and_outside_the_trigger() -> None:
    assert infra_functions.UPLOADS_PREFIX == UPLOAD_PREFIX
    assert not UPLOAD_PREFIX.startswith("catalogs/") and UPLOAD_PREFIX in CATALOG_KEY_PREFIXES


def test_the_artifacts_bucket_takes_posts_from_the_site_only(any_synth: Synth) -> None:
    bucket = any_synth.resources[any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)]
    (rule,) = bucket["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["POST"]
    site = any_synth.stack.frontend.origin
    origins = rule["AllowedOrigins"]
    assert len(origins) == 1 and "*" != origins[0]
    if any_synth.stack.config.custom_domain:
        assert origins == [site]
    else:
        distribution = any_synth.logical_id(any_synth.stack.frontend.distribution)
        assert distribution in str(origins[0])


def test_evaluations_may_put_only_uploads_and_current(any_synth: Synth) -> None:
    assert s3_prefixes(any_synth, "evaluations", "s3:PutObject") == {CURRENT_KEY, f"{UPLOAD_PREFIX}*"}
    assert f"{UPLOAD_PREFIX}*" in s3_prefixes(any_synth, "evaluations", "s3:GetObject")


def test_the_load_steps_read_uploads(any_synth: Synth) -> None:
    for name in ("load-plan", "load-worker"):
        assert f"{UPLOAD_PREFIX}*" in s3_prefixes(any_synth, name, "s3:GetObject*"), name

"""Context parameters of the stack: defaults deploy, typos fail at synth with the field's name."""

from __future__ import annotations

import os

import pytest

from infra_cdk.config import ConfigError, StackConfig


def from_context(**context: object) -> StackConfig:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    import aws_cdk as cdk

    return StackConfig.from_context(cdk.App(context=context).node)


def test_defaults_bake_the_model_into_a_dev_stack() -> None:
    config = from_context()
    assert (config.stage, config.model_in_image, config.is_production, config.custom_domain) == (
        "dev", True, False, False)


def test_cli_strings_become_integers() -> None:
    config = from_context(search_memory_mb="4096", loader_reserved_concurrency="0", stage="prod")
    assert config.search_memory_mb == 4096 and config.loader_reserved_concurrency == 0
    assert config.is_production


@pytest.mark.parametrize(("context", "message"), [
    ({"stage": "Prod_1"}, "stage"),
    ({"model_s3_prefix": "s3://bucket/model"}, "model_s3_prefix"),
    ({"precision": "fp16"}, "precision"),
    ({"domain_name": "shop.example.com"}, "certificate_arn"),
    ({"domain_name": "shop.example.com",
      "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/x"}, "us-east-1"),
    ({"search_timeout_s": 60}, "search_timeout_s"),
    ({"search_memory_mb": "lots"}, "search_memory_mb"),
    ({"loader_reserved_concurrency": -1}, "loader_reserved_concurrency"),
    ({"load_shard_size": 0}, "load_shard_size"),
    ({"load_max_concurrency": 20_000}, "load_max_concurrency"),
    ({"load_tolerated_failure_percent": 101}, "load_tolerated_failure_percent"),
    ({"load_shards_per_worker": 0}, "load_shards_per_worker"),
])
def test_bad_context_fails_naming_the_parameter(context: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_context(**context)

"""Template assertions on the synthesized moodboard stack (both configurations, see conftest)."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import DOMAIN, MODEL_PREFIX, ROOT, Synth, cdk_json_context

pytestmark = pytest.mark.slow

HANDLERS = {"search": "search.app.handler", "loader": "loader.handler.handler",
            "evaluations": "evaluations.app.handler", "load-plan": "loader.plan.handler",
            "load-worker": "loader.worker.handler", "load-reduce": "loader.reduce.handler"}
# The functions built from the one container image (evaluations is a zip).
IMAGE_FUNCTIONS = ("search", "loader", "load-plan", "load-worker", "load-reduce")
# The functions API Gateway fronts (the loader has no HTTP routes).
API_FUNCTIONS = ("search", "evaluations")
WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")


# ---- helpers over the template ---------------------------------------------------------------

def refs(value: Any) -> set[str]:
    """Logical ids a template value points at through Ref or Fn::GetAtt."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else target.split(".")[0])
        for item in value.values():
            found |= refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= refs(item)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    """Every Allow/Deny statement attached to a role: inline policies and IAM::Policy resources."""
    statements = []
    role = synth.resources[role_id]
    for policy in role["Properties"].get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def function_ids(synth: Synth) -> dict[str, str]:
    fns = synth.stack.functions
    return {name: synth.logical_id(fn) for name, fn in fns.all.items()}


def role_of(synth: Synth, function_id: str) -> str:
    role = synth.resources[function_id]["Properties"]["Role"]
    return role["Fn::GetAtt"][0]


def table_ids(synth: Synth) -> dict[str, str]:
    s = synth.stack.storage
    return {"history": synth.logical_id(s.history_table), "evaluations": synth.logical_id(s.evaluations_table),
            "search_urls": synth.logical_id(s.search_urls_table), "jobs": synth.logical_id(s.jobs_table),
            "rounds": synth.logical_id(s.rounds_table)}


def routes(synth: Synth) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RouteKey"]: r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()}


def integration_function(synth: Synth, route: dict[str, Any]) -> str:
    integration_id = next(iter(refs(route["Target"])))
    uri = synth.resources[integration_id]["Properties"]["IntegrationUri"]
    return next(iter(refs(uri)))


# ---- storage ---------------------------------------------------------------------------------

def test_every_table_has_point_in_time_recovery_and_is_on_demand(any_synth: Synth) -> None:
    tables = any_synth.of_type("AWS::DynamoDB::Table")
    assert len(tables) == 5  # history, evaluations, search URLs, jobs, rounds
    for table in tables.values():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True


def test_table_keys_match_the_runtime_table_specs(default_synth: Synth) -> None:
    from moodboard.tables import TABLES

    ids = table_ids(default_synth)
    by_field = {"history_table": ids["history"], "evaluations_table": ids["evaluations"],
                "search_urls_table": ids["search_urls"], "jobs_table": ids["jobs"], "rounds_table": ids["rounds"]}
    assert {spec.settings_field for spec in TABLES} == set(by_field)
    for spec in TABLES:
        props = default_synth.resources[by_field[spec.settings_field]]["Properties"]
        keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
        assert keys.get("HASH") == spec.partition_key, spec.settings_field
        assert keys.get("RANGE") == spec.sort_key, spec.settings_field
        ttl = props.get("TimeToLiveSpecification")
        assert (ttl["AttributeName"] if ttl and ttl["Enabled"] else None) == spec.ttl_attribute, spec.settings_field
        indexes = {i["IndexName"]: tuple(k["AttributeName"] for k in i["KeySchema"])
                   for i in props.get("GlobalSecondaryIndexes", [])}
        assert indexes == spec.indexes, spec.settings_field
        assert all(a["AttributeType"] == "S" for a in props["AttributeDefinitions"])


def test_every_bucket_blocks_public_access_and_denies_plain_http(any_synth: Synth) -> None:
    buckets = any_synth.of_type("AWS::S3::Bucket")
    assert len(buckets) == 3  # access logs, artifacts, site
    policies = {next(iter(refs(p["Properties"]["Bucket"]))): p["Properties"]["PolicyDocument"]["Statement"]
                for p in any_synth.of_type("AWS::S3::BucketPolicy").values()}
    for bucket_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, bucket_id
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], bucket_id
        denies_http = [s for s in policies.get(bucket_id, []) if s["Effect"] == "Deny"
                       and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                       and s["Principal"] == {"AWS": "*"} and s["Action"] == "s3:*"]
        assert denies_http, f"{bucket_id} has no TLS-only policy"


def test_artifacts_bucket_is_versioned_and_logs_access(default_synth: Synth) -> None:
    bucket = default_synth.resources[default_synth.logical_id(default_synth.stack.storage.artifacts_bucket)]
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["Properties"]["LoggingConfiguration"]["LogFilePrefix"] == "s3/artifacts/"


def test_production_keeps_data_and_dev_cleans_up(default_synth: Synth, domain_synth: Synth) -> None:
    for table in domain_synth.of_type("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Retain"
        assert table["Properties"]["DeletionProtectionEnabled"] is True
    for bucket in domain_synth.of_type("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    for table in default_synth.of_type("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"
    assert default_synth.of_type("Custom::S3AutoDeleteObjects")
    assert not domain_synth.of_type("Custom::S3AutoDeleteObjects")


# ---- frontend --------------------------------------------------------------------------------

def distribution_config(synth: Synth) -> dict[str, Any]:
    (distribution,) = synth.of_type("AWS::CloudFront::Distribution").values()
    return distribution["Properties"]["DistributionConfig"]


def test_cloudfront_reads_the_private_site_bucket_through_origin_access_control(any_synth: Synth) -> None:
    config = distribution_config(any_synth)
    site_id = any_synth.logical_id(any_synth.stack.frontend.bucket)
    (origin,) = config["Origins"]
    assert refs(origin["DomainName"]) == {site_id}
    (oac_id,) = refs(origin["OriginAccessControlId"])
    oac = any_synth.resources[oac_id]["Properties"]["OriginAccessControlConfig"]
    assert oac["OriginAccessControlOriginType"] == "s3" and oac["SigningBehavior"] == "always"
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    (policy,) = [p for p in any_synth.of_type("AWS::S3::BucketPolicy").values()
                 if refs(p["Properties"]["Bucket"]) == {site_id}]
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    reads = [s for s in allows if s["Principal"] == {"Service": "cloudfront.amazonaws.com"}]
    assert reads and all("AWS:SourceArn" in s["Condition"]["StringEquals"] for s in reads)
    # Anything else is the dev stage's auto-delete custom resource, never the public.
    others = [s for s in allows if s not in reads]
    assert all(refs(s["Principal"]) and "AutoDelete" in next(iter(refs(s["Principal"]))) for s in others)
    assert config["DefaultRootObject"] == "index.html"
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["Logging"]["Prefix"] == "cloudfront/"


def test_custom_domain_serves_tls_1_2_or_newer_only(domain_synth: Synth) -> None:
    config = distribution_config(domain_synth)
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert config["ViewerCertificate"]["SslSupportMethod"] == "sni-only"


def test_default_certificate_deployment_is_warned_about(default_synth: Synth, domain_synth: Synth) -> None:
    from aws_cdk.assertions import Match

    assert "ViewerCertificate" not in distribution_config(default_synth)
    warning = Match.string_like_regexp(".*TLS 1.2\\+ needs a custom domain.*")
    assert default_synth.annotations.find_warning("*", warning)
    assert not domain_synth.annotations.find_warning("*", warning)


def header_policy(synth: Synth) -> dict[str, Any]:
    (policy,) = synth.of_type("AWS::CloudFront::ResponseHeadersPolicy").values()
    return policy["Properties"]["ResponseHeadersPolicyConfig"]


def csp_text(value: Any) -> str:
    """The CSP with tokens written as <LogicalId.Attr> so it can be parsed."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(csp_text(part) for part in value["Fn::Join"][1])
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    raise AssertionError(f"unexpected CSP part {value}")


def directives(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def test_security_headers_are_set_on_every_response(any_synth: Synth) -> None:
    config = header_policy(any_synth)
    security = config["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 365 * 24 * 3600
    assert security["StrictTransportSecurity"]["Override"] is True
    assert security["ContentTypeOptions"] == {"Override": True}
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "strict-origin-when-cross-origin"
    csp = directives(csp_text(security["ContentSecurityPolicy"]["ContentSecurityPolicy"]))
    assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert not any("'unsafe-inline'" in values or "'unsafe-eval'" in values for values in csp.values())
    distribution = distribution_config(any_synth)
    assert refs(distribution["DefaultCacheBehavior"]["ResponseHeadersPolicyId"])


def test_csp_lets_the_site_call_only_its_api(default_synth: Synth, domain_synth: Synth) -> None:
    api_id = domain_synth.logical_id(domain_synth.stack.api.api)
    exact = directives(csp_text(header_policy(domain_synth)["SecurityHeadersConfig"]["ContentSecurityPolicy"]
                                ["ContentSecurityPolicy"]))
    s3 = ["https://*.s3.amazonaws.com", "https://*.s3.eu-west-1.amazonaws.com"]  # the catalog upload (presigned POST)
    assert exact["connect-src"] == ["'self'", f"<{api_id}.ApiEndpoint>", *s3]
    regional = directives(csp_text(header_policy(default_synth)["SecurityHeadersConfig"]["ContentSecurityPolicy"]
                                   ["ContentSecurityPolicy"]))
    assert regional["connect-src"] == ["'self'", "https://*.execute-api.eu-west-1.amazonaws.com", *s3]


def test_site_gets_a_config_json_with_the_api_url(any_synth: Synth) -> None:
    (deployment,) = any_synth.of_type("Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert len(props["SourceObjectKeys"]) == 2  # frontend/ and the generated config.json
    api_id = any_synth.logical_id(any_synth.stack.api.api)
    assert api_id in refs(props["SourceMarkers"])
    assert refs(props["DestinationBucketName"]) == {any_synth.logical_id(any_synth.stack.frontend.bucket)}
    assert props["DistributionPaths"] == ["/*"]


# ---- API -------------------------------------------------------------------------------------

def handler_of(synth: Synth, function_id: str) -> str:
    """The handler a function runs: a zip function's Handler, an image function's command."""
    props = synth.resources[function_id]["Properties"]
    return props["Handler"] if "Handler" in props else props["ImageConfig"]["Command"][0]


def deployed_routes(synth: Synth) -> dict[str, tuple[str, str]]:
    """What API Gateway routes, from the template: route key -> (handler it reaches, AuthorizationType).
    A greedy `{name+}` is written `{name}`, as OpenAPI spells FastAPI's `{name:path}`."""
    found = {}
    for route in synth.of_type("AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        key = re.sub(r"\{(\w+)\+\}", r"{\1}", props["RouteKey"])
        assert key not in found, f"{key} routed twice"
        found[key] = (handler_of(synth, integration_function(synth, props)), props["AuthorizationType"])
    return found


def served_routes(handlers: list[str]) -> dict[str, tuple[str, str]]:
    """What the apps behind these Lambda handlers serve, from each app's OpenAPI document: route key ->
    (handler, "JWT" for a route that declares the admin bearer token, else "NONE")."""
    found = {}
    for handler in handlers:
        app = importlib.import_module(handler.rsplit(".", 1)[0]).app
        for path, operations in app.openapi()["paths"].items():
            for method, operation in operations.items():
                found[f"{method.upper()} {path}"] = (handler, "JWT" if operation.get("security") else "NONE")
    return found


def api_handlers(synth: Synth) -> list[str]:
    fns = function_ids(synth)
    return [handler_of(synth, fns[name]) for name in API_FUNCTIONS]


def test_the_api_routes_every_app_route_to_its_function_with_admin_routes_behind_jwt(any_synth: Synth) -> None:
    served = served_routes(api_handlers(any_synth))
    assert {auth for _, auth in served.values()} == {"JWT", "NONE"}  # both kinds exist to be told apart
    assert deployed_routes(any_synth) == served


def synthesize_api(routes: list[Any]) -> Synth:
    """Just the Api construct, over two stand-in functions with the real handler names, deploying `routes`."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Annotations, Template

    from infra_cdk.api import Api
    from infra_cdk.config import StackConfig
    from infra_cdk.functions import EVALUATIONS_HANDLER, SEARCH_HANDLER

    app = cdk.App(context=cdk_json_context())
    stack = cdk.Stack(app, "ApiOnly")

    def function(name: str, handler: str) -> lambda_.Function:
        return lambda_.Function(stack, name, runtime=lambda_.Runtime.PYTHON_3_12, handler=handler,
                                code=lambda_.Code.from_inline("handler = None"))

    Api(stack, "Api", config=StackConfig.from_context(app.node), search=function("Search", SEARCH_HANDLER),
        evaluations=function("Evaluations", EVALUATIONS_HANDLER), site_origin="https://site.example.com",
        routes=routes)
    return Synth(stack=stack, template=Template.from_stack(stack), annotations=Annotations.from_stack(stack),
                 outdir=Path(app.outdir))


@pytest.mark.parametrize("breakage", ["admin route missing", "admin route public", "route on the wrong function"])
def test_the_route_check_fails_when_the_api_and_the_apps_disagree(default_synth: Synth, breakage: str) -> None:
    from dataclasses import replace

    from infra_cdk.routes import app_routes

    routes = list(app_routes())
    victim = next(i for i, route in enumerate(routes) if route.authorized and route.function == "evaluations")
    if breakage == "admin route missing":
        del routes[victim]
    elif breakage == "admin route public":
        routes[victim] = replace(routes[victim], role="public")
    else:
        routes[victim] = replace(routes[victim], function="search")
    synth = synthesize_api(routes)
    served = served_routes(api_handlers(default_synth))
    deployed = deployed_routes(synth)
    assert deployed != served
    assert {key for key in served if deployed.get(key) != served[key]} == {app_routes()[victim].key}


def test_admin_routes_use_the_cognito_authorizer_and_public_routes_none(any_synth: Synth) -> None:
    (authorizer_id, authorizer), = any_synth.of_type("AWS::ApiGatewayV2::Authorizer").items()
    jwt = authorizer["Properties"]
    assert jwt["AuthorizerType"] == "JWT"
    assert any_synth.logical_id(any_synth.stack.api.user_pool) in refs(jwt["JwtConfiguration"]["Issuer"])
    assert refs(jwt["JwtConfiguration"]["Audience"]) == {
        any_synth.logical_id(any_synth.stack.api.user_pool_client)}
    for key, route in routes(any_synth).items():
        if route["AuthorizationType"] == "JWT":
            assert refs(route["AuthorizerId"]) == {authorizer_id}, key
        else:
            assert route["AuthorizationType"] == "NONE", key
            assert "AuthorizerId" not in route, key


def test_admin_pool_is_invite_only_with_mfa(any_synth: Synth) -> None:
    (pool,) = any_synth.of_type("AWS::Cognito::UserPool").values()
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["MfaConfiguration"] == "ON"
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12


def test_the_pool_has_the_admin_group_the_app_reads_from_the_groups_claim(any_synth: Synth) -> None:
    from moodboard.auth import ADMIN_GROUP

    (group,) = any_synth.of_type("AWS::Cognito::UserPoolGroup").values()
    assert group["Properties"]["GroupName"] == ADMIN_GROUP == "moodboard-admins"
    assert refs(group["Properties"]["UserPoolId"]) == {any_synth.logical_id(any_synth.stack.api.user_pool)}


def test_stage_throttles_logs_and_limits_search_harder(any_synth: Synth) -> None:
    (stage,) = any_synth.of_type("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default" and props["AutoDeploy"] is True
    default = props["DefaultRouteSettings"]
    assert 0 < default["ThrottlingRateLimit"] and 0 < default["ThrottlingBurstLimit"]
    search = props["RouteSettings"]["POST /search"]
    assert search["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
    (log_group_id,) = refs(props["AccessLogSettings"]["DestinationArn"])
    assert any_synth.resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    log_format = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "status", "routeKey", "latency"} <= set(log_format)


def test_cors_allows_only_the_site_origin(default_synth: Synth, domain_synth: Synth) -> None:
    (api,) = domain_synth.of_type("AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["CorsConfiguration"]["AllowOrigins"] == [f"https://{DOMAIN}"]
    (api,) = default_synth.of_type("AWS::ApiGatewayV2::Api").values()
    (origin,) = api["Properties"]["CorsConfiguration"]["AllowOrigins"]
    distribution_id = default_synth.logical_id(default_synth.stack.frontend.distribution)
    assert origin == {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}


def test_cors_allows_the_methods_the_routes_use(any_synth: Synth) -> None:
    (api,) = any_synth.of_type("AWS::ApiGatewayV2::Api").values()
    assert sorted(api["Properties"]["CorsConfiguration"]["AllowMethods"]) == sorted(
        {key.split()[0] for key in routes(any_synth)})


# ---- IAM -------------------------------------------------------------------------------------

def all_statements(synth: Synth) -> list[dict[str, Any]]:
    statements = []
    for resource in synth.resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            statements += props["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_no_iam_statement_allows_every_action_of_a_service(any_synth: Synth) -> None:
    statements = all_statements(any_synth)
    assert statements
    for statement in statements:
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), statement


def test_search_role_reads_the_artifacts_bucket_and_cannot_write_it(any_synth: Synth) -> None:
    fns = function_ids(any_synth)
    bucket = any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)
    statements = role_statements(any_synth, role_of(any_synth, fns["search"]))
    on_bucket = [s for s in statements if bucket in refs(s["Resource"])]
    # its one write: a round's uploaded picture, create-only (tests/infra/test_round_picture_grants.py)
    writes = [s for s in on_bucket if not all(a.startswith(("s3:Get", "s3:List")) for a in as_list(s["Action"]))]
    assert [(as_list(s["Action"]), s["Condition"]) for s in writes] == [
        (["s3:PutObject"], {"Null": {"s3:if-none-match": "false"}})]
    actions = {a for s in on_bucket if s not in writes for a in as_list(s["Action"])}
    assert "s3:GetObject*" in actions
    assert all(a.startswith(("s3:Get", "s3:List")) for a in actions), actions
    dynamo = {(a, r) for s in statements for a in as_list(s["Action"]) if a.startswith("dynamodb:")
              for r in refs(s["Resource"])}
    assert dynamo == {("dynamodb:PutItem", table_ids(any_synth)["history"])}


def test_evaluations_role_writes_only_its_own_tables(any_synth: Synth) -> None:
    fns = function_ids(any_synth)
    tables = table_ids(any_synth)
    statements = role_statements(any_synth, role_of(any_synth, fns["evaluations"]))
    # besides: its one history write, a round run's searches stop expiring (tests/infra/test_history_keep_grants.py)
    statements = [s for s in statements if "dynamodb:Attributes" not in str(s.get("Condition"))]
    written = {r for s in statements if set(as_list(s["Action"])) & set(WRITE_ACTIONS) for r in refs(s["Resource"])}
    assert written == {tables["evaluations"], tables["search_urls"], tables["jobs"], tables["rounds"]}
    history_actions = {a for s in statements if tables["history"] in refs(s["Resource"]) for a in as_list(s["Action"])}
    assert "dynamodb:Query" in history_actions
    assert not history_actions & set(WRITE_ACTIONS)
    # S3: only the index-version keys (tests/infra/test_index_grants.py)
    assert {a for s in statements for a in as_list(s["Action"]) if a.startswith("s3:")} == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    invokes = [s for s in statements if "lambda:InvokeFunction" in as_list(s["Action"])]
    assert {r for s in invokes for r in refs(s["Resource"])} == {fns["loader"]}


def s3_prefixes(synth: Synth, name: str, action: str) -> set[str]:
    """The artifacts-bucket prefixes a function's role may use `action` on ("" for the bucket itself)."""
    bucket = synth.logical_id(synth.stack.storage.artifacts_bucket)
    found = set()
    for statement in role_statements(synth, role_of(synth, function_ids(synth)[name])):
        if action not in as_list(statement["Action"]):
            continue
        for resource in as_list(statement["Resource"]):
            assert bucket in refs(resource), resource
            found.add(resource["Fn::Join"][1][-1].lstrip("/") if "Fn::Join" in resource else "")
    return found


@pytest.mark.parametrize(("name", "puts"), [("loader", set()), ("load-plan", {"loads/*"}),
                                            ("load-worker", {"loads/*"}), ("load-reduce", {"indexes/*", "loads/*"})])
def test_load_roles_write_only_their_own_prefixes(any_synth: Synth, name: str, puts: set[str]) -> None:
    assert s3_prefixes(any_synth, name, "s3:PutObject") == puts
    statements = role_statements(any_synth, role_of(any_synth, function_ids(any_synth)[name]))
    assert not any(a.startswith("s3:Delete") for s in statements for a in as_list(s["Action"]))


def test_only_reduce_publishes_and_workers_never_read_indexes(any_synth: Synth) -> None:
    writers = {name for name in HANDLERS if "indexes/*" in s3_prefixes(any_synth, name, "s3:PutObject")}
    assert writers == {"load-reduce"}
    assert s3_prefixes(any_synth, "load-worker", "s3:GetObject*") == {"", "catalogs/*", "uploads/catalogs/*",
                                                                       "loads/*"} | (
        set() if any_synth.stack.config.model_in_image else {MODEL_PREFIX + "*"})
    assert s3_prefixes(any_synth, "loader", "s3:GetObject*") == set()


def test_load_roles_touch_the_jobs_table_with_the_fewest_actions(any_synth: Synth) -> None:
    jobs = table_ids(any_synth)["jobs"]
    expected = {"loader": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
                "load-plan": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
                "load-worker": {"dynamodb:UpdateItem"}, "load-reduce": {"dynamodb:GetItem", "dynamodb:UpdateItem"}}
    for name, actions in expected.items():
        statements = role_statements(any_synth, role_of(any_synth, function_ids(any_synth)[name]))
        found = {a for s in statements if jobs in refs(s["Resource"]) for a in as_list(s["Action"])
                 if a.startswith("dynamodb:")}
        assert found == actions, name


def test_each_function_has_its_own_role_without_managed_policies(any_synth: Synth) -> None:
    fns = function_ids(any_synth)
    roles = {role_of(any_synth, fid) for fid in fns.values()}
    assert len(roles) == len(HANDLERS)
    for role in roles:
        assert "ManagedPolicyArns" not in any_synth.resources[role]["Properties"]


# ---- functions -------------------------------------------------------------------------------

def test_search_loader_and_load_steps_share_one_image_with_their_own_handlers(any_synth: Synth) -> None:
    fns = function_ids(any_synth)
    images = {json.dumps(any_synth.resources[fns[name]]["Properties"]["Code"]["ImageUri"]) for name in IMAGE_FUNCTIONS}
    assert len(images) == 1
    for name in IMAGE_FUNCTIONS:
        assert any_synth.resources[fns[name]]["Properties"]["ImageConfig"]["Command"] == [HANDLERS[name]]
    assert len(any_synth.assets().get("dockerImages", {})) == 1
    evaluations = any_synth.resources[fns["evaluations"]]["Properties"]
    assert evaluations["Handler"] == HANDLERS["evaluations"] and evaluations["Runtime"] == "python3.12"
    assert len(evaluations["Layers"]) == 1


@pytest.mark.parametrize("handler", sorted(HANDLERS.values()))
def test_handler_modules_exist_and_define_handler(handler: str) -> None:
    *package, module, name = handler.split(".")
    path = ROOT / "functions" / Path(*package) / f"{module}.py"
    assert path.is_file(), path
    tree = ast.parse(path.read_text())
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert name in assigned | defined


def test_image_target_follows_the_model_location(default_synth: Synth, domain_synth: Synth) -> None:
    def image(synth: Synth) -> dict[str, Any]:
        (source,) = [i["source"] for i in synth.assets()["dockerImages"].values()]
        return source

    assert image(default_synth)["dockerBuildTarget"] == "with-model"
    assert image(domain_synth)["dockerBuildTarget"] == "runtime"
    assert image(default_synth)["dockerFile"] == "functions/Dockerfile"
    assert image(default_synth)["platform"] == "linux/amd64"


def environment(synth: Synth, name: str) -> dict[str, Any]:
    return synth.resources[function_ids(synth)[name]]["Properties"]["Environment"]["Variables"]


def test_function_environment_matches_settings_fields(any_synth: Synth) -> None:
    from moodboard.settings import Settings

    for name in HANDLERS:
        variables = environment(any_synth, name)
        for key in variables:
            if key.startswith("MOODBOARD_"):
                assert key.removeprefix("MOODBOARD_").lower() in Settings.model_fields, key
            else:
                assert key.startswith("POWERTOOLS_"), key
        for table in ("HISTORY", "EVALUATIONS", "SEARCH_URLS", "JOBS"):
            assert f"MOODBOARD_{table}_TABLE" in variables, (name, table)
        assert variables["POWERTOOLS_SERVICE_NAME"] == name
        assert "MOODBOARD_ARTIFACTS_BUCKET" in variables and "MOODBOARD_AWS_REGION" in variables
        assert "MOODBOARD_ADMIN_TOKEN" not in variables and "MOODBOARD_FETCH_ALLOW_LOOPBACK" not in variables
    assert environment(any_synth, "evaluations")["MOODBOARD_TRUST_GATEWAY_AUTH"] == "true"
    # Only search preloads at init: the loader loads its model per job, evaluations has none.
    assert {name for name in HANDLERS if environment(any_synth, name).get("MOODBOARD_PRELOAD") == "true"} == {"search"}
    assert refs(environment(any_synth, "evaluations")["MOODBOARD_LOADER_FUNCTION_NAME"]) == {
        function_ids(any_synth)["loader"]}


def test_model_location_reaches_search_and_the_load_steps_that_embed(default_synth: Synth,
                                                                     domain_synth: Synth) -> None:
    for synth in (default_synth, domain_synth):
        for name in ("loader", "load-reduce"):  # they never load the model
            assert not {"MOODBOARD_MODEL_DIR", "MOODBOARD_MODEL_S3_URI"} & set(environment(synth, name)), name
    for name in ("search", "load-plan", "load-worker"):
        assert environment(default_synth, name)["MOODBOARD_MODEL_DIR"] == "/opt/model"
        uri = environment(domain_synth, name)["MOODBOARD_MODEL_S3_URI"]
        assert uri["Fn::Join"][1][-1] == f"/{MODEL_PREFIX}"
        assert environment(domain_synth, name)["MOODBOARD_PRECISION"] == "int8"
    search_role = role_of(domain_synth, function_ids(domain_synth)["search"])
    resources = json.dumps([s["Resource"] for s in role_statements(domain_synth, search_role)])
    assert f"/{MODEL_PREFIX}*" in resources


def test_functions_trace_keep_logs_and_use_configured_limits(any_synth: Synth) -> None:
    config = any_synth.stack.config
    from infra_cdk.functions import LOADER_MEMORY_MB, LOADER_TIMEOUT_S

    expected = {"search": (config.search_memory_mb, config.search_timeout_s),
                "loader": (LOADER_MEMORY_MB, LOADER_TIMEOUT_S),
                "evaluations": (config.evaluations_memory_mb, config.evaluations_timeout_s),
                "load-plan": (config.load_plan_memory_mb, config.loader_timeout_s),
                "load-worker": (config.loader_memory_mb, config.loader_timeout_s),
                "load-reduce": (config.load_reduce_memory_mb, config.loader_timeout_s)}
    for name, fid in function_ids(any_synth).items():
        props = any_synth.resources[fid]["Properties"]
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        (log_group,) = refs(props["LoggingConfig"]["LogGroup"])
        assert any_synth.resources[log_group]["Properties"]["RetentionInDays"] == config.log_retention_days
        assert (props["MemorySize"], props["Timeout"]) == expected[name]
    loader = any_synth.resources[function_ids(any_synth)["loader"]]["Properties"]
    assert loader["ReservedConcurrentExecutions"] == config.loader_reserved_concurrency


def test_catalog_uploads_trigger_the_loader(any_synth: Synth) -> None:
    (notifications,) = any_synth.of_type("Custom::S3BucketNotifications").values()
    configs = notifications["Properties"]["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    loader = function_ids(any_synth)["loader"]
    suffixes = set()
    for config in configs:
        assert refs(config["LambdaFunctionArn"]) == {loader}
        assert config["Events"] == ["s3:ObjectCreated:*"]
        rules = {r["Name"]: r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
        assert rules["prefix"] == "catalogs/"
        suffixes.add(rules["suffix"])
    from moodboard.archives import ARCHIVE_SUFFIXES
    from moodboard.loading import CATALOG_SUFFIXES

    assert suffixes == set(CATALOG_SUFFIXES) | set(ARCHIVE_SUFFIXES)


def test_evaluations_zip_holds_its_code_and_the_shared_library(default_synth: Synth) -> None:
    (folder,) = [default_synth.outdir / a["source"]["path"] for a in default_synth.assets()["files"].values()
                 if a.get("displayName", "").endswith("Functions/Evaluations/Code")]
    assert (folder / "evaluations" / "app.py").is_file()
    shared = {p.name for p in (ROOT / "functions" / "moodboard").glob("*.py")}
    assert shared and shared <= {p.name for p in (folder / "moodboard").glob("*.py")}
    assert not (folder / "search").exists() and not (folder / "loader").exists()
    assert not list(folder.rglob("__pycache__"))


def test_alarms_cover_errors_throttles_and_p99_of_each_function_and_the_api(any_synth: Synth) -> None:
    alarms = any_synth.of_type("AWS::CloudWatch::Alarm").values()
    topic = next(iter(any_synth.of_type("AWS::SNS::Topic")))
    seen = set()
    for alarm in alarms:
        props = alarm["Properties"]
        assert refs(props["AlarmActions"]) == {topic}
        dimension = props["Dimensions"][0]
        target = next(iter(refs(dimension["Value"])))
        seen.add((target, props["MetricName"], props.get("Statistic") or props.get("ExtendedStatistic")))
    for fid in function_ids(any_synth).values():
        assert {(fid, "Errors", "Sum"), (fid, "Throttles", "Sum"), (fid, "Duration", "p99")} <= seen
    machine = any_synth.logical_id(any_synth.stack.loads.state_machine)
    assert {(machine, "ExecutionsFailed", "Sum"), (machine, "ExecutionsTimedOut", "Sum")} <= seen
    api = any_synth.logical_id(any_synth.stack.api.api)
    assert {(api, "5xx", "Sum"), (api, "Latency", "p99")} <= seen


def test_template_has_no_dependency_cycle(any_synth: Synth) -> None:
    """CDK does not catch reference cycles inside a stack; CloudFormation would reject them at deploy."""
    graph = {rid: (refs(r.get("Properties", {})) | set(as_list(r.get("DependsOn", [])))) & set(any_synth.resources)
             for rid, r in any_synth.resources.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_outputs_give_the_site_api_bucket_and_pool(any_synth: Synth) -> None:
    outputs = any_synth.template.to_json()["Outputs"]
    assert {"SiteUrl", "ApiUrl", "ArtifactsBucket", "UserPoolId", "UserPoolClientId", "LoadStateMachine",
            "LoadLogs"} <= set(outputs)

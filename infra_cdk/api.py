"""The HTTP API: public search and rating routes, admin routes behind a Cognito JWT authorizer.

Routes mirror docs/contracts.md ("HTTP API"). The default stage throttles every route and the
expensive POST /search harder; access logs go to their own log group as JSON.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw_rest
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.functions import log_removal, retention

GET, POST, DELETE = apigw.HttpMethod.GET, apigw.HttpMethod.POST, apigw.HttpMethod.DELETE
# (path, methods) of the search function's routes; all public.
SEARCH_ROUTES: tuple[tuple[str, tuple[apigw.HttpMethod, ...]], ...] = (
    ("/health", (GET,)),
    ("/version", (GET,)),
    ("/categories", (GET,)),
    ("/search", (POST,)),
    ("/products/{id}", (GET,)),
    ("/products/{id}/similar", (GET,)),
    ("/products/{id}/image", (GET,)),
)
PUBLIC_EVALUATION_ROUTES = (("/evaluations", (POST,)),)
ADMIN_ROUTES: tuple[tuple[str, tuple[apigw.HttpMethod, ...]], ...] = (
    ("/evaluations", (GET,)),
    ("/evaluations/summary", (GET,)),
    ("/history", (GET,)),
    ("/search-urls", (GET, POST)),
    ("/search-urls/{id}", (DELETE,)),
    ("/admin/load", (POST,)),
    ("/admin/load/{job}", (GET,)),
)
SEARCH_ROUTE_KEY = "POST /search"
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "userAgent": "$context.identity.userAgent",
}


@jsii.implements(apigw.IAccessLogSettings)
class JsonAccessLogs:
    """Stage access logs: one JSON object per request (ACCESS_LOG_FORMAT) into a log group."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigw.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_rest.AccessLogFormat:
        return apigw_rest.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))


def route_keys(routes: tuple[tuple[str, tuple[apigw.HttpMethod, ...]], ...]) -> list[str]:
    """"METHOD /path" keys of a route table, as API Gateway spells them."""
    return [f"{method.value} {path}" for path, methods in routes for method in methods]


class Api(Construct):
    """`user_pool`, `user_pool_client`, `api` (HttpApi) and its `stage`; `url` is the base URL."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, search: lambda_.IFunction,
                 evaluations: lambda_.IFunction, site_origin: str) -> None:
        super().__init__(scope, id)
        self.user_pool = cognito.UserPool(
            self, "Admins",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True, username=False),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12, require_lowercase=True, require_uppercase=True, require_digits=True,
                require_symbols=True, temp_password_validity=Duration.days(3)),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=log_removal(config),
        )
        self.user_pool_client = self.user_pool.add_client(
            "Team",
            auth_flows=cognito.AuthFlow(user_srp=True, user_password=True),
            generate_secret=False,
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(1),
        )
        issuer = f"https://cognito-idp.{Stack.of(self).region}.amazonaws.com/{self.user_pool.user_pool_id}"
        self.authorizer = authorizers.HttpJwtAuthorizer(
            "CognitoAdmins", issuer, jwt_audience=[self.user_pool_client.user_pool_client_id])

        self.api = apigw.HttpApi(
            self, "Http",
            api_name=f"moodboard-{config.stage}",
            description="moodboard search and evaluations API",
            create_default_stage=False,
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=[site_origin],
                allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST, apigw.CorsHttpMethod.DELETE],
                allow_headers=["Authorization", "Content-Type"],
                max_age=Duration.hours(1),
            ),
        )
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=retention(config.log_retention_days),
                                         removal_policy=log_removal(config))
        self.stage = apigw.HttpStage(
            self, "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            access_log_settings=JsonAccessLogs(self.access_logs),
        )
        cfn_stage: apigw.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        cfn_stage.route_settings = {SEARCH_ROUTE_KEY: {"ThrottlingRateLimit": config.search_rate_limit,
                                                       "ThrottlingBurstLimit": config.search_burst_limit}}

        search_integration = integrations.HttpLambdaIntegration("Search", search)
        evaluations_integration = integrations.HttpLambdaIntegration("Evaluations", evaluations)
        self.routes: dict[str, apigw.HttpRoute] = {}
        self._add(SEARCH_ROUTES, search_integration, authorizer=None)
        self._add(PUBLIC_EVALUATION_ROUTES, evaluations_integration, authorizer=None)
        self._add(ADMIN_ROUTES, evaluations_integration, authorizer=self.authorizer)
        # Routes must exist before the stage's per-route throttling names them.
        for route in self.routes.values():
            self.stage.node.add_dependency(route)

    @property
    def url(self) -> str:
        """The API's base URL, ending in '/'."""
        return self.stage.url

    @property
    def endpoint(self) -> str:
        """https://<api id>.execute-api.<region>.amazonaws.com (the API's origin, no trailing slash)."""
        return self.api.api_endpoint

    def _add(self, routes: tuple[tuple[str, tuple[apigw.HttpMethod, ...]], ...],
             integration: apigw.HttpRouteIntegration, *, authorizer: apigw.IHttpRouteAuthorizer | None) -> None:
        for path, methods in routes:
            created = self.api.add_routes(
                path=path, methods=list(methods), integration=integration,
                authorizer=authorizer if authorizer is not None else apigw.HttpNoneAuthorizer(),
            )
            for method, route in zip(methods, created, strict=True):
                self.routes[f"{method.value} {path}"] = route


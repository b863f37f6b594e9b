"""The HTTP API: public search and rating routes, team and admin routes behind a Cognito JWT authorizer.

The routes are the Lambda apps' own (infra_cdk.routes reads them from the FastAPI routers): each
goes to the function whose app serves it, and the team and admin ones (those that depend on the
app's team or admin check) get the JWT authorizer. The user pool's `moodboard-admins` group
(moodboard.auth.ADMIN_GROUP) makes a user an admin: the app reads it from the `cognito:groups` claim. CORS preflights are answered by API Gateway (no OPTIONS routes, no
$default route). The default stage throttles every route and the expensive POST /search harder;
access logs go to their own log group as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

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
from infra_cdk.routes import AppRoute, app_routes, check_unique

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


class Api(Construct):
    """`user_pool`, its `admin_group`, `user_pool_client`, `api` (HttpApi) and its `stage`; `url` is the base URL.

    `app_routes` are the routes deployed: the `routes` argument, by default every route of the two
    apps (infra_cdk.routes.app_routes); `routes` maps each route key to its HttpRoute.
    """

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, search: lambda_.IFunction,
                 evaluations: lambda_.IFunction, site_origin: str,
                 routes: Sequence[AppRoute] | None = None) -> None:
        from moodboard.auth import ADMIN_GROUP

        super().__init__(scope, id)
        self.app_routes = check_unique(app_routes() if routes is None else routes)
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
        # Its members are admins (promote index versions, load catalogs); every other user is a team member.
        self.admin_group = cognito.CfnUserPoolGroup(
            self, "AdminGroup", user_pool_id=self.user_pool.user_pool_id, group_name=ADMIN_GROUP,
            description="moodboard admins: promote index versions, dry-run and load catalogs, upload catalogs")
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
                allow_methods=[apigw.CorsHttpMethod[method] for method in self.methods],
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

        integration_of = {"search": integrations.HttpLambdaIntegration("Search", search),
                          "evaluations": integrations.HttpLambdaIntegration("Evaluations", evaluations)}
        self.routes: dict[str, apigw.HttpRoute] = {}
        for route in self.app_routes:
            (self.routes[route.key],) = self.api.add_routes(
                path=route.path, methods=[apigw.HttpMethod[route.method]], integration=integration_of[route.function],
                authorizer=self.authorizer if route.authorized else apigw.HttpNoneAuthorizer(),
            )
        if SEARCH_ROUTE_KEY not in self.routes:
            raise ValueError(f"the stage throttles {SEARCH_ROUTE_KEY}, which no app serves")
        # Routes must exist before the stage's per-route throttling names them.
        for created in self.routes.values():
            self.stage.node.add_dependency(created)

    @property
    def url(self) -> str:
        """The API's base URL, ending in '/'."""
        return self.stage.url

    @property
    def endpoint(self) -> str:
        """https://<api id>.execute-api.<region>.amazonaws.com (the API's origin, no trailing slash)."""
        return self.api.api_endpoint

    @property
    def methods(self) -> list[str]:
        """The HTTP methods the routes use (what CORS allows), in a stable order."""
        return sorted({route.method for route in self.app_routes})

    @property
    def authorized_route_keys(self) -> set[str]:
        """Keys of the routes behind the Cognito JWT authorizer (team and admin routes)."""
        return {route.key for route in self.app_routes if route.authorized}

"""The moodboard stack: storage, functions, API, frontend and monitoring, wired together.

Site origin and API origin refer to each other (CORS on the API, CSP on the site). With a custom
domain both are known up front. Without one the distribution's domain exists only after deploy, so
the API's CORS names the distribution and the CSP allows the region's execute-api hosts instead of
the API's own host (naming it would make a dependency cycle).
"""

from __future__ import annotations

from aws_cdk import Annotations, CfnOutput, Stack
from constructs import Construct

from infra_cdk.api import Api
from infra_cdk.config import StackConfig
from infra_cdk.frontend import Frontend
from infra_cdk.functions import Functions
from infra_cdk.loads import Loads
from infra_cdk.monitoring import Monitoring
from infra_cdk.nag import suppress
from infra_cdk.storage import Storage

MODEL_MANIFEST = "artifacts/model/manifest.json"


class MoodboardStack(Stack):
    """`storage`, `functions`, `loads`, `api`, `frontend`, `monitoring`."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, **kwargs: object) -> None:
        super().__init__(scope, id, description=f"moodboard ({config.stage}): vibe search for products", **kwargs)
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        self.functions = Functions(self, "Functions", config=config, storage=self.storage)
        self.loads = Loads(self, "Loads", config=config, storage=self.storage, functions=self.functions)
        if config.custom_domain:
            self.api = Api(self, "Api", config=config, search=self.functions.search,
                           evaluations=self.functions.evaluations, site_origin=f"https://{config.domain_name}")
            self.frontend = Frontend(self, "Frontend", config=config, storage=self.storage,
                                     api_origin=self.api.endpoint)
        else:
            self.frontend = Frontend(self, "Frontend", config=config, storage=self.storage,
                                     api_origin=f"https://*.execute-api.{self.region}.amazonaws.com")
            self.api = Api(self, "Api", config=config, search=self.functions.search,
                           evaluations=self.functions.evaluations, site_origin=self.frontend.origin)
            Annotations.of(self.frontend).add_warning_v2(
                "moodboard:default-certificate",
                "No domain_name/certificate_arn: CloudFront's default certificate accepts TLS 1.0+ "
                "(TLS 1.2+ needs a custom domain, see the README Deploy section).")
        self.frontend.publish(self.api.url)
        self.monitoring = Monitoring(self, "Monitoring", config=config, functions=self.functions.all,
                                     api=self.api.api, state_machine=self.loads.state_machine)

        CfnOutput(self, "SiteUrl", value=self.frontend.origin, description="open this in a browser")
        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "ArtifactsBucket", value=self.storage.artifacts_bucket.bucket_name,
                  description="upload catalogs under catalogs/")
        CfnOutput(self, "LoadStateMachine", value=self.loads.state_machine.state_machine_arn,
                  description="each catalog load is one execution, named by its job id")
        CfnOutput(self, "LoadLogs", value=self.loads.log_group.log_group_name,
                  description="the load executions' history (every state's input and output)")
        CfnOutput(self, "UserPoolId", value=self.api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.api.user_pool_client.user_pool_client_id)
        CfnOutput(self, "DistributionDomain", value=self.frontend.distribution.distribution_domain_name,
                  description="point the custom domain's DNS (CNAME/alias) here")
        suppress(self)

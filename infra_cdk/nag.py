"""cdk-nag (AwsSolutions) suppressions, each with the reason the finding is accepted here.

Kept in one place so a reviewer sees every exception at once; tests/infra/test_nag.py checks that the
report has no unsuppressed error and that every reason is specific.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

if TYPE_CHECKING:
    from infra_cdk.stack import MoodboardStack

XRAY = "Resource::*"
S3_READ_ACTIONS = ["Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*"]


def _regex(pattern: str) -> dict[str, str]:
    return {"regex": f"/{pattern}/"}


def _artifacts(prefix: str) -> dict[str, str]:
    return _regex(rf"^Resource::<StorageArtifacts[0-9A-F]+\.Arn>\/{prefix}\*$")


def _gsi(table: str) -> dict[str, str]:
    return _regex(rf"^Resource::<Storage{table}[0-9A-F]+\.Arn>\/index\/\*$")


def _add(construct: IConstruct, *suppressions: NagPackSuppression) -> None:
    NagSuppressions.add_resource_suppressions(construct, list(suppressions), apply_to_children=True)


def suppress(stack: MoodboardStack) -> None:
    """Suppress the findings reviewed for this stack; anything new still fails the nag test."""
    config = stack.config
    fns = stack.functions
    model_prefix = [_artifacts(config.model_s3_prefix)] if not config.model_in_image else []

    _add(fns.search.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="Search reads index bundles (and an S3 model bundle) under fixed prefixes with grant_read's "
               "read-only s3:GetObject*/List* family; it writes only PutItem to the history table (the "
               "grant also names the table's GSIs) and X-Ray PutTraceSegments has no resource-level scope. "
               "Its one write, by its team route, stores a round's uploaded picture under "
               "rounds/pictures/<sha256>.<ext>: the key is the picture's hash, so it needs a wildcard, and "
               "the put must carry If-None-Match (create-only), so no stored picture can be replaced.",
        applies_to=[XRAY, *S3_READ_ACTIONS, _artifacts("indexes/"), _artifacts("rounds/pictures/"), _gsi("History"),
                    *model_prefix],
    ))
    _add(fns.loader.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The loader only writes its job's record and starts the load state machine (StartExecution on "
               "that one ARN); its sole wildcard is X-Ray's PutTraceSegments, which takes no resource ARN.",
        applies_to=[XRAY],
    ))
    _add(fns.load_plan.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The plan step reads the uploaded catalog (catalogs/) and CURRENT's product records (indexes/), "
               "and writes the job's shard files under loads/ (grant_put's s3:Abort* ends unfinished multipart "
               "uploads); object keys vary per job, X-Ray accepts no resource.",
        applies_to=[XRAY, *S3_READ_ACTIONS, "Action::s3:Abort*", _artifacts("catalogs/"), _artifacts("indexes/"),
                    _artifacts("loads/"), _artifacts("uploads/catalogs/"), *model_prefix],
    ))
    _add(fns.load_worker.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="A shard worker reads its shard and the shard's images (catalogs/, or an archive's files under "
               "loads/) and writes the shard's vectors under loads/, keys that vary per job and shard; no "
               "access to indexes/. X-Ray's trace upload takes no resource ARN.",
        applies_to=[XRAY, *S3_READ_ACTIONS, "Action::s3:Abort*", _artifacts("catalogs/"), _artifacts("loads/"),
                    _artifacts("uploads/catalogs/"), *model_prefix],
    ))
    _add(fns.load_reduce.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="Reduce reads every shard under loads/ and CURRENT's bundle under indexes/, then publishes a new "
               "immutable version under indexes/ (multipart for large files: s3:Abort*) and notes it under "
               "loads/; the version key is new each load. X-Ray segments have no resource ARN.",
        applies_to=[XRAY, *S3_READ_ACTIONS, "Action::s3:Abort*", _artifacts("loads/"), _artifacts("indexes/")],
    ))
    loads = stack.loads
    _add(loads.policy, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The load state machine reads shard manifests and writes its map results only under loads/ "
               "(keys per job and map run), watches and stops its own child executions (execution names are "
               "made per run), and delivers logs and X-Ray traces, actions AWS offers only on '*'.",
        applies_to=[XRAY, _artifacts("loads/"), _artifacts("loads/map-results/"),
                    _regex(r"^Resource::arn:<AWS::Partition>:states:[^:]+:[^:]+:execution:"
                           r"<LoadsStateMachine[0-9A-F]+\.Name>(\/Shards)?:\*$")],
    ))
    _add(loads.state_machine.node.find_child("DistributedMapPolicy"), NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="Not deployed: CDK's own policy for the Distributed Map is never attached (the state machine's role "
               "takes no policy updates); Loads/Policy grants the same child-execution actions instead.",
    ))
    _add(fns.evaluations.role, NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="Evaluations queries the history table's 'recent' GSI (index/*), may invoke the loader "
               "function only (grant_invoke also lists its version/alias ARNs, :*), and sends X-Ray "
               "segments, an action without resource-level permissions. For the index versions list and "
               "promotion it reads (s3:GetObject only) each version's card under index-cards/ and each "
               "version's manifest.json under indexes/<version>/: version names are made per publish, so "
               "those two keys need a wildcard; CURRENT, the one key it writes, is named exactly. A load's "
               "dry run reads the uploaded catalog (catalogs/ or uploads/catalogs/) and CURRENT's "
               "products.jsonl, read-only. It may put objects under uploads/catalogs/ only (besides CURRENT), "
               "to sign the team page's presigned catalog upload, whose key is a new uuid each time. It reads "
               "(and lists, by key prefix) rounds' uploaded pictures under rounds/pictures/, named by hash.",
        applies_to=[XRAY, _gsi("History"), _regex(r"^Resource::<FunctionsLoader[0-9A-F]+\.Arn>:\*$"),
                    _artifacts("index-cards/"),
                    _regex(r"^Resource::<StorageArtifacts[0-9A-F]+\.Arn>\/indexes\/\*\/manifest\.json$"),
                    _artifacts("catalogs/"), _artifacts("uploads/catalogs/"), _artifacts("rounds/pictures/"),
                    _regex(r"^Resource::<StorageArtifacts[0-9A-F]+\.Arn>\/indexes\/\*\/products\.jsonl$")],
    ))
    _add(fns.evaluations, NagPackSuppression(
        id="AwsSolutions-L1",
        reason="Python 3.12 on purpose: the same interpreter as the search/loader container image "
               "(lambda/python:3.12) and the wheels its dependency layer is built for; upgrade all together.",
    ))

    authorized = stack.api.authorized_route_keys
    for key, route in stack.api.routes.items():
        if key not in authorized:
            _add(route, NagPackSuppression(
                id="AwsSolutions-APIG4",
                reason=f"{key} is public by design (anonymous shoppers search and rate); the stage throttles "
                       "it and only the team and admin routes carry the Cognito JWT authorizer.",
            ))

    _add(stack.api.user_pool, NagPackSuppression(
        id="AwsSolutions-COG8",
        reason="The Plus feature plan (threat protection) is billed per user; this pool holds a few team "
               "admins that an operator creates, with self sign-up off and TOTP MFA required.",
    ))

    distribution = stack.frontend.distribution
    if not config.custom_domain:
        _add(distribution, NagPackSuppression(
            id="AwsSolutions-CFR4",
            reason="No custom domain configured: the default *.cloudfront.net certificate forces CloudFront's "
                   "TLSv1 policy. Deploy with domain_name + certificate_arn for TLSv1.2_2021 (README, Deploy).",
        ))
    _add(distribution,
         NagPackSuppression(
             id="AwsSolutions-CFR1",
             reason="The storefront serves shoppers in any country, so there is no geo restriction to apply.",
         ),
         NagPackSuppression(
             id="AwsSolutions-CFR2",
             reason="The distribution serves only static files; the API behind it is throttled per stage and "
                    "route at API Gateway. A WAF web ACL can be attached later if abuse shows up.",
         ))

    for child in Stack.of(stack).node.children:
        if child.node.id.startswith("Custom::CDKBucketDeployment"):
            _add(child,
                 NagPackSuppression(
                     id="AwsSolutions-IAM4",
                     reason="aws-cdk-lib's BucketDeployment provider role uses AWSLambdaBasicExecutionRole for "
                            "its own logs; it runs only during deployments.",
                 ),
                 NagPackSuppression(
                     id="AwsSolutions-IAM5",
                     reason="BucketDeployment copies the frontend asset from the CDK staging bucket into the site "
                            "bucket (object wildcards in both) and invalidates the distribution.",
                 ),
                 NagPackSuppression(
                     id="AwsSolutions-L1",
                     reason="BucketDeployment's Lambda runtime is chosen by aws-cdk-lib, not by this stack.",
                 ))
        elif child.node.id.startswith("BucketNotificationsHandler"):
            _add(child,
                 NagPackSuppression(
                     id="AwsSolutions-IAM4",
                     reason="aws-cdk-lib's bucket-notifications handler (sets the catalogs/ -> loader trigger at "
                            "deploy time) writes its logs through AWSLambdaBasicExecutionRole.",
                 ))

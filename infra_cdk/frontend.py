"""The static site: a private bucket behind CloudFront (origin access control), security headers,
and the frontend/ files deployed with a config.json that points the pages at the API.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.storage import Storage, secure_bucket

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
CONFIG_FILE = "config.json"
HSTS_MAX_AGE = Duration.days(730)
UPLOAD_CORS_MAX_AGE_S = 3000


def content_security_policy(api_origin: str, *upload_origins: str) -> str:
    """Scripts, styles and fonts from the site only; API calls to the site and `api_origin`, and the
    catalog upload (a presigned S3 POST) to `upload_origins`; product images from any https host
    (catalog image URLs) and local previews (blob:, data:)."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "font-src 'self'",
        "img-src 'self' https: data: blob:",
        " ".join(["connect-src 'self'", api_origin, *upload_origins]),
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "upgrade-insecure-requests",
    ])


class Frontend(Construct):
    """`bucket`, `distribution`, `headers` (response headers policy) and `origin` (https://host)."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: Storage, api_origin: str) -> None:
        super().__init__(scope, id)
        self.bucket = secure_bucket(self, "Site", config, server_access_logs_bucket=storage.logs_bucket,
                                    server_access_logs_prefix="s3/site/")
        self.headers = cloudfront.ResponseHeadersPolicy(
            self, "SecurityHeaders",
            comment="moodboard: CSP, HSTS, nosniff, frame and referrer policies",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(api_origin, *self.upload_origins()),
                    override=True),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=HSTS_MAX_AGE, include_subdomains=True, override=True),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN, override=True),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(custom_headers=[
                cloudfront.ResponseCustomHeader(header="Permissions-Policy",
                                                value="camera=(), microphone=(), geolocation=()", override=True),
            ]),
        )
        tls: dict[str, object] = {}
        if config.custom_domain:
            tls = {
                "domain_names": [config.domain_name],
                "certificate": acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn),
                "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            }
        self.distribution = cloudfront.Distribution(
            self, "Distribution",
            comment=f"moodboard {config.stage} site",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
                compress=True,
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=storage.logs_bucket,
            log_file_prefix="cloudfront/",
            **tls,
        )
        domain = config.domain_name if config.custom_domain else self.distribution.distribution_domain_name
        self.origin = f"https://{domain}"
        # The team page uploads catalogs straight to the artifacts bucket with a presigned POST
        # (POST /admin/catalog-uploads): S3 answers that browser request only for the site's origin.
        storage.artifacts_bucket.add_cors_rule(
            allowed_methods=[s3.HttpMethods.POST], allowed_origins=[self.origin], allowed_headers=["*"],
            max_age=UPLOAD_CORS_MAX_AGE_S)

    def upload_origins(self) -> list[str]:
        """Where a presigned POST of the artifacts bucket points (S3's global and regional endpoints).
        Host wildcards, not the bucket's own domain: the bucket's CORS rule names the distribution, whose
        headers policy this is, so naming the bucket here would be a dependency cycle."""
        return ["https://*.s3.amazonaws.com", f"https://*.s3.{Stack.of(self).region}.amazonaws.com"]

    def publish(self, api_url: str) -> s3deploy.BucketDeployment:
        """Upload frontend/ with a generated config.json ({"apiBase": api_url}) and invalidate the cache."""
        return s3deploy.BucketDeployment(
            self, "Deploy",
            destination_bucket=self.bucket,
            sources=[
                s3deploy.Source.asset(str(FRONTEND_DIR), exclude=[CONFIG_FILE, "**/.DS_Store"]),
                s3deploy.Source.json_data(CONFIG_FILE, {"apiBase": api_url}),
            ],
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
        )

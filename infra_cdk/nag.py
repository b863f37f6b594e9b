"""cdk-nag (AwsSolutions) suppressions, each with the reason it does not apply here.

Kept in one place so a reviewer sees every exception at once; tests check each reason is specific.
"""

from __future__ import annotations

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions


def suppress(stack: Stack) -> None:
    """Add the stack's suppressions (filled in as the checks are reviewed)."""

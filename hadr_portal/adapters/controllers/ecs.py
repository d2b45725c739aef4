"""Restarting an AWS ECS service by forcing a new deployment, through boto3 (imported only when used)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from hadr_portal.adapters import netguard

from .base import DEFAULT_TIMEOUT_SECONDS, ControllerFailed, ControllerResult
from .table import TableReader, is_http_url, is_text


@dataclass(frozen=True)
class EcsController:
    """AWS ECS `UpdateService(forceNewDeployment)`: ECS replaces the service's tasks, keeping old ones until
    the new ones are healthy. Credentials come from boto3's usual chain (environment, files, instance role)."""

    kind: ClassVar[str] = "ecs"
    cluster: str
    service: str
    region: str | None = None
    endpoint_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def describe(self) -> str:
        where = f" ({self.region})" if self.region else ""
        return f"forces a new deployment of ECS service {self.service} in cluster {self.cluster}{where}"

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        import boto3  # heavy: only when ECS is used
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        config = Config(
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        try:
            client = boto3.session.Session(region_name=self.region).client(
                "ecs", endpoint_url=self.endpoint_url, config=config
            )
            answer = client.update_service(cluster=self.cluster, service=self.service, forceNewDeployment=True)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ControllerFailed(f"ECS refused: {error.get('Code', 'error')}: {error.get('Message', '')}") from None
        except BotoCoreError as exc:
            raise ControllerFailed(f"ECS call failed: {exc}") from None
        described = answer.get("service", {})
        deployments = described.get("deployments", [])
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), deployments[0] if deployments else {})
        deployment = primary.get("id", "")
        output = (
            f"ECS service {self.service} in cluster {self.cluster}: new deployment {deployment or '(no id)'}, "
            f"{described.get('desiredCount', '?')} task(s) desired"
        )
        return ControllerResult(output, {"deployment_id": deployment})


def ecs_from_table(read: TableReader, timeout: float) -> EcsController:
    cluster = read.take("cluster", is_text, "the ECS cluster's name or ARN", required=True)
    service = read.take("service", is_text, "the ECS service's name or ARN", required=True)
    region = read.take("region", is_text, 'an AWS region, e.g. "eu-west-1"')
    endpoint = read.take("endpoint_url", is_http_url, "an http(s) URL (only for an ECS-compatible endpoint)")
    if endpoint and (refusal := netguard.userinfo_refusal(endpoint, instead="AWS credentials come from boto3's chain")):
        read.problems.append(f"endpoint_url: {refusal}")
    return EcsController(cluster or "?", service or "?", region, endpoint, timeout)

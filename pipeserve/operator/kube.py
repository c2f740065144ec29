"""The few Kubernetes API calls the handlers make, through kopf's own client.

kopf already holds an authenticated aiohttp session (in-cluster service account, kubeconfig
or whatever login handler ran) and retries on server errors; going through it keeps a second
client — and the heavy ``kubernetes`` package — out of the operator. kopf does not export
its client, so this module is the one place that touches ``kopf._cogs.clients``; a kopf
upgrade that moves it breaks only here. The calls work only inside the operator (a handler
or a task kopf started), where kopf's credentials are in context.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api, errors

from pipeserve.operator import resources

NotFound = errors.APINotFoundError
Conflict = errors.APIConflictError

_MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class Client:
    """Create, read, patch, list and delete objects of the resources in ``resources``."""

    def __init__(self, settings: kopf.OperatorSettings, logger: logging.Logger | None = None) -> None:
        self._settings = settings
        self._logger = logger or logging.getLogger("pipeserve.operator")

    async def get(self, resource: resources.Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            found: dict[str, Any] = await api.get(
                resource.path(namespace, name), settings=self._settings, logger=self._logger
            )
        except errors.APINotFoundError:
            return None
        return found

    async def list(
        self, resource: resources.Resource, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects in ``namespace`` carrying all ``labels``; [] when the API has no such resource.

        The labels are also checked here, not only by the server's label selector, so a
        server that ignores the selector cannot make us act on foreign objects.
        """
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        url = resource.path(namespace) + "?" + urllib.parse.urlencode({"labelSelector": selector})
        try:
            listing = await api.get(url, settings=self._settings, logger=self._logger)
        except errors.APINotFoundError:  # e.g. the Gateway API CRDs are not installed
            return []
        items: list[dict[str, Any]] = []
        for item in listing.get("items") or []:
            item_labels = item.get("metadata", {}).get("labels") or {}
            if all(item_labels.get(key) == value for key, value in labels.items()):
                items.append({"apiVersion": resource.api_version, "kind": resource.kind, **item})
        return items

    async def create(self, resource: resources.Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in its namespace; raises ``Conflict`` when it exists."""
        namespace = obj["metadata"].get("namespace")
        created: dict[str, Any] = await api.post(
            resource.path(namespace), payload=dict(obj), settings=self._settings, logger=self._logger
        )
        return created

    async def patch(
        self,
        resource: resources.Resource,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386: maps merge, lists are replaced, null deletes)."""
        patched: dict[str, Any] = await api.patch(
            resource.path(namespace, name, subresource),
            payload=dict(patch),
            headers=_MERGE_PATCH,
            settings=self._settings,
            logger=self._logger,
        )
        return patched

    async def delete(self, resource: resources.Resource, namespace: str, name: str) -> None:
        """Delete the object (dependents go in the background); gone already is fine."""
        try:
            await api.delete(
                resource.path(namespace, name),
                payload={"propagationPolicy": "Background"},
                settings=self._settings,
                logger=self._logger,
            )
        except errors.APINotFoundError:
            pass

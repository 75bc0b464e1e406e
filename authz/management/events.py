"""What callers see of authentication events and expiry-warning deliveries.

``EventView`` is one ``auth_events`` row as ``hokusai auth events --json`` prints it and the REST
API returns it; ``DeliveryView`` one row of the webhook delivery log. Neither holds a secret: key
ids are public, routes have no query string, the webhook secret is never stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from authz.management.views import UtcTime, iso


class EventView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    at: UtcTime  # the second the events happened in
    count: int  # identical events of that second
    kind: str
    key_id: str | None
    user_id: int | None
    user_email: str | None
    reason: str
    client_address: str | None
    route: str
    method: str
    instance: str

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(), "at": iso(self.at)}


class DeliveryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    key_id: str
    threshold_s: int
    expires_at: UtcTime
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: UtcTime
    delivered_at: UtcTime | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.model_dump(),
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
            "delivered_at": iso(self.delivered_at),
        }

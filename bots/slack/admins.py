"""Who is a workspace admin, from users.info, remembered for a few minutes.

Asked only for admin commands, never on the /imagine path, so an ordinary
request costs no extra Slack call.
"""

from __future__ import annotations

import logging
import time

from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.failures import slack_error

log = logging.getLogger("imaginebot.slack")


class AdminDirectory:
    def __init__(self, client: AsyncWebClient, *, ttl_seconds: float = 300.0) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, tuple[float, bool]] = {}

    async def is_admin(self, user_id: str) -> bool:
        cached = self._cache.get(user_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            resp = await self.client.users_info(user=user_id)
        except Exception as e:  # Slack's error, a text body, a dropped connection
            # Failing closed: without users.info (scope users:read) nobody is an admin.
            log.warning("users.info failed for %s: %s", user_id, slack_error(e))
            return False
        user = resp.get("user") or {}
        admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._cache[user_id] = (now, admin)
        return admin

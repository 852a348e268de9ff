"""Private answers: seen only by the person who asked.

Tried in order: the request's response_url (works even where the bot is not
a member, for 30 minutes), chat.postEphemeral in the conversation, and last
the bot's direct message with the user, so that every request gets its
outcome to its owner even when one way is closed.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bots.slack.payloads import Origin
from bots.slack.failures import slack_error

log = logging.getLogger("imaginebot.slack")


class PrivateReplies:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send(self, origin: Origin, text: str, *, blocks: list[dict[str, Any]] | None = None) -> bool:
        """True once one way worked. `text` stands in for `blocks` in notifications."""
        if origin.response_url:
            try:
                webhook = AsyncWebhookClient(origin.response_url, session=self.client.session)
                resp = await webhook.send(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
                if resp.status_code == 200:
                    return True
                log.info("response_url answered %s; trying chat.postEphemeral", resp.status_code)
            except Exception as e:  # a dropped connection, a timeout: try the next way
                log.info("response_url failed (%s); trying chat.postEphemeral", slack_error(e))
        if origin.channel:
            try:
                await self.client.chat_postEphemeral(
                    channel=origin.channel, user=origin.user, text=text, blocks=blocks, thread_ts=origin.user_thread_ts
                )
                return True
            except Exception as e:  # Slack's error, a text body, a dropped connection: try the next way
                log.info("chat.postEphemeral failed (%s); trying a direct message", slack_error(e))
        try:
            # A user id as the channel posts in the bot's direct message with that user.
            await self.client.chat_postMessage(channel=origin.user, text=text, blocks=blocks)
            return True
        except Exception as e:
            log.warning("could not reach %s privately: %s", origin.user, slack_error(e))
            return False


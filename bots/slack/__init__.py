"""imaginebot in Slack: /imagine, /imagine-quota, /imagine-admin, the Edit image
shortcut and @mentions, over HTTP (/slack/events) or Socket Mode."""

from bots.slack.app import SlackAdapter

__all__ = ["SlackAdapter"]

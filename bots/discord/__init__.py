"""The Discord adapter: slash commands, the Edit image context menu and result
buttons, on discord.py 2.x, all handed to the shared core's ImageService."""

from bots.discord.bot import DiscordAdapter

__all__ = ["DiscordAdapter"]

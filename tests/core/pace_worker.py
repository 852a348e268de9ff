"""A second OS process for the pacing tests, sharing one database (a SQLite
file or a PostgreSQL URL) and one fake OpenAI with the test:

  python -m tests.core.pace_worker DB OPENAI_BASE_URL CONFIG_JSON USERS JOBS_PER_USER

Opens a real ImageService, prints "ready", waits for a line on stdin (so
both processes start together), then has USERS members ask JOBS_PER_USER
images each, all at once, and prints a JSON summary: which jobs succeeded,
which failed and with what code.
"""

from __future__ import annotations

import asyncio
import json
import sys

from core.config import config_from_mapping
from core.errors import ImagineError
from core.models import ImageOptions, Requester
from core.provider import OpenAIProvider, make_client
from core.service import ImageService


async def main(db: str, base_url: str, config_json: str, users: int, jobs: int) -> None:
    config = config_from_mapping(json.loads(config_json))
    client = make_client("sk-test-fake-not-a-real-key", base_url=base_url, timeout_seconds=config.openai.timeout_seconds)
    service = await ImageService.open(config, db, OpenAIProvider(client, config))
    await service.recover(tell_users=False)  # beats its heart like every real process (the CLI's way)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    outcomes: dict[str, str] = {}

    async def one(user: int, job: int) -> None:
        requester = Requester(platform="discord", workspace="G2", user=f"W{user}", channel="C1")
        name = f"worker {user}.{job}"
        try:
            await service.generate(requester, name, ImageOptions(quality="low"))
        except ImagineError as e:
            outcomes[name] = e.code
        else:
            outcomes[name] = "succeeded"

    await asyncio.gather(*(one(u, j) for u in range(users) for j in range(jobs)))
    await service.close()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    db, base_url, config_json, users, jobs = sys.argv[1:6]
    asyncio.run(main(db, base_url, config_json, int(users), int(jobs)))

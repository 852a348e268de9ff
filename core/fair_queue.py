"""The order in which waiting jobs get their turn: round-robin across
communities (Slack workspaces, Discord servers) sharing one OpenAI account,
then across the members of each, and each member's own jobs in the order
they asked. One member's backlog (eight `--n 8` requests) then costs the
others at most one turn each, never a wait behind all of it.

Jobs put back after a 429 go ahead of everyone, in the order they came back:
they had their turn already.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, Iterator, Protocol, TypeVar


class Queued(Protocol):
    @property
    def community(self) -> str: ...

    @property
    def member(self) -> str: ...


T = TypeVar("T", bound=Queued)


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._front: deque[T] = deque()
        # community -> member -> their jobs; dict order is the rotation order
        self._rounds: OrderedDict[str, OrderedDict[str, deque[T]]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, item: object) -> bool:
        return any(item is queued for queued in self)

    def push(self, item: T, *, front: bool = False) -> None:
        if front:
            self._front.append(item)
        else:
            members = self._rounds.setdefault(item.community, OrderedDict())
            members.setdefault(item.member, deque()).append(item)
        self._size += 1

    def peek(self) -> T | None:
        if self._front:
            return self._front[0]
        for members in self._rounds.values():
            for jobs in members.values():
                return jobs[0]
        return None

    def take(self, item: T) -> None:
        """`item` leaves the queue because it got its turn: its member goes
        to the back of its community's round, its community to the back of
        the round of communities."""
        if self._front and self._front[0] is item:
            self._front.popleft()
            self._size -= 1
            return
        self.remove(item)
        members = self._rounds.get(item.community)
        if members is None:
            return
        if item.member in members:
            members.move_to_end(item.member)
        self._rounds.move_to_end(item.community)

    def remove(self, item: T) -> bool:
        """`item` gives up its place (cancelled, waited too long)."""
        if any(item is queued for queued in self._front):
            self._front.remove(item)
            self._size -= 1
            return True
        members = self._rounds.get(item.community)
        jobs = members.get(item.member) if members is not None else None
        if members is None or jobs is None or not any(item is queued for queued in jobs):
            return False
        jobs.remove(item)
        self._size -= 1
        if not jobs:
            del members[item.member]
        if not members:
            del self._rounds[item.community]
        return True

    def __iter__(self) -> Iterator[T]:
        """Everyone in the order they will get their turn, if nobody new
        comes: the rotation played out on a copy."""
        yield from self._front
        rounds = OrderedDict((c, OrderedDict((m, deque(jobs)) for m, jobs in members.items())) for c, members in self._rounds.items())
        while rounds:
            community, members = next(iter(rounds.items()))
            member, jobs = next(iter(members.items()))
            yield jobs.popleft()
            if jobs:
                members.move_to_end(member)
            else:
                del members[member]
            if members:
                rounds.move_to_end(community)
            else:
                del rounds[community]

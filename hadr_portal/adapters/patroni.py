"""Patroni's REST API: the state of a cluster Patroni manages, and the actions it takes on request.

Patroni is the engine of automatic failover (with etcd holding the leader key); the portal reads it and asks it,
never acts behind its back on a Patroni node. Every member serves the API; the client tries the URLs it was given
in turn, so a dead leader's API does not blind it. The API answers `401` without credentials when
`restapi.authentication` is set (it must be: without it anyone local may `POST /switchover`).

- `cluster()`       `GET /cluster`: members, roles, states, timelines, lag, pending restart, paused
- `history()`       `GET /history`: the timeline changes (when, at which LSN, why)
- `switchover()`    `POST /switchover` (planned: a healthy leader hands over, optionally at a time)
- `failover()`      `POST /failover` (the leader is gone: promote this candidate)
- `restart()`, `reinitialize()`  `POST /restart`, `POST /reinitialize` on one member's own API
- `pause()`         `PATCH /config {"pause": …}`: maintenance mode, no automatic failover
- `config()`, `config_patch()`  the dynamic configuration (`GET` / `PATCH /config`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

LEADER_ROLES = ("leader", "standby_leader", "master")  # 3.0.2's /patroni says "master"; /cluster says "leader"


class PatroniError(Exception):
    """Patroni refused, or no member's API answered; the message says which, in Patroni's words when it gave some."""


@dataclass(frozen=True)
class PatroniMember:
    name: str
    role: str  # leader | replica | sync_standby | standby_leader
    state: str  # running | streaming | stopped | starting | …
    host: str
    port: int
    timeline: int | None
    lag_bytes: int | None
    api_url: str
    pending_restart: bool = False
    tags: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES


@dataclass(frozen=True)
class PatroniCluster:
    members: tuple[PatroniMember, ...]
    paused: bool
    scheduled_switchover: Mapping[str, Any] | None

    @property
    def leader(self) -> PatroniMember | None:
        return next((member for member in self.members if member.is_leader), None)

    def member(self, name: str) -> PatroniMember | None:
        return next((member for member in self.members if member.name == name), None)


@dataclass(frozen=True)
class TimelineChange:
    timeline: int
    lsn: int
    reason: str
    at: datetime | None
    new_leader: str


class PatroniClient:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        username: str = "",
        password: str = "",
        timeout: float = 3.0,
        action_timeout: float = 60.0,
    ) -> None:
        """`timeout` bounds a read; `action_timeout` an action (Patroni answers a switchover once it is done)."""
        if not urls:
            raise ValueError("a Patroni cluster needs at least one REST API URL")
        self.urls = [url.rstrip("/") for url in urls]
        self._auth = httpx.BasicAuth(username, password) if username else None
        self._timeout = timeout
        self._action_timeout = action_timeout

    # --- reading -------------------------------------------------------------------------------------------

    def cluster(self) -> PatroniCluster:
        data = self._request("GET", "/cluster")
        return PatroniCluster(
            members=tuple(_member(item) for item in data.get("members") or ()),
            paused=bool(data.get("pause")),
            scheduled_switchover=data.get("scheduled_switchover"),
        )

    def history(self) -> list[TimelineChange]:
        rows = self._request("GET", "/history")
        changes = []
        for row in rows or ():
            # [timeline, lsn, reason, timestamp, new_leader] (the last two since Patroni 1.6 / 2.1)
            timeline, lsn, reason = row[0], row[1], row[2]
            at = _time(row[3]) if len(row) > 3 else None
            changes.append(
                TimelineChange(int(timeline), int(lsn), str(reason), at, str(row[4]) if len(row) > 4 else "")
            )
        return changes

    def config(self) -> dict[str, Any]:
        return dict(self._request("GET", "/config"))

    def member_status(self, member: PatroniMember) -> dict[str, Any]:
        """`GET /patroni` on the member's own API: its state and `postmaster_start_time` (a restart changes it)."""
        return dict(self._request("GET", "/patroni", base=member.api_url, member_only=True))

    # --- acting ---------------------------------------------------------------------------------------------

    def switchover(self, *, leader: str, candidate: str = "", scheduled_at: datetime | None = None) -> str:
        """Ask the leader to hand over (Patroni answers once it is done, or that it is scheduled). Sent to the
        leader's own API, as patronictl does: Patroni 3.0.2 wakes only the member that received the request, so
        another member's leader would see it at its next loop, up to `loop_wait` later."""
        body: dict[str, Any] = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        if scheduled_at is not None:
            if scheduled_at.tzinfo is None:
                raise ValueError("a scheduled switchover's time must carry its time zone")
            body["scheduled_at"] = scheduled_at.isoformat()
        return str(self._request("POST", "/switchover", json=body, text=True, base=self._api_of(leader)))

    def failover(self, *, candidate: str) -> str:
        """Promote `candidate` (no leader to hand over): sent to the candidate's own API, which acts at once."""
        return str(
            self._request("POST", "/failover", json={"candidate": candidate}, text=True, base=self._api_of(candidate))
        )

    def _api_of(self, name: str) -> str:
        """A member's own REST API as /cluster gives it ("" when it is not known: the URLs in turn)."""
        try:
            member = self.cluster().member(name)
        except PatroniError:
            return ""
        return member.api_url if member is not None else ""

    def restart(self, member: PatroniMember) -> str:
        return str(self._request("POST", "/restart", json={}, text=True, base=member.api_url, member_only=True))

    def reinitialize(self, member: PatroniMember) -> str:
        return str(
            self._request(
                "POST", "/reinitialize", json={"force": True}, text=True, base=member.api_url, member_only=True
            )
        )

    def pause(self, paused: bool) -> dict[str, Any]:
        return self.config_patch({"pause": paused})

    def config_patch(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._request("PATCH", "/config", json=dict(changes)))

    # --- the wire -------------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, json: Any = None, text: bool = False, base: str = "", member_only: bool = False
    ) -> Any:
        """Try each URL in turn (`base`, a member's own API, first; `member_only`: that one alone); the first
        answer counts, a refusal included.

        A read goes on to the next member after any failure. An action goes on only when it could not be sent
        (no connection): once a member may have received it, asking another could do it twice (a second
        switchover), so a timeout there is an error saying the action may have happened."""
        own = base.removesuffix("/patroni").rstrip("/")
        if not base:
            bases = self.urls
        elif member_only:  # a restart or reinitialize is that member's own
            bases = [own]
        else:  # its own API first; when it cannot be reached from here (another address), the URLs given
            bases = list(dict.fromkeys([own, *self.urls]))
        reading = method == "GET"
        failures = []
        for url in bases:
            try:
                response = httpx.request(
                    method,
                    url + path,
                    json=json,
                    auth=self._auth,
                    timeout=self._timeout if reading else httpx.Timeout(self._action_timeout, connect=self._timeout),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            except httpx.HTTPError as exc:
                if reading:
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                raise PatroniError(
                    f"{method} {path} was sent to {url}, which did not answer ({type(exc).__name__}): it may have "
                    "happened; look at the cluster's state before asking again"
                ) from None
            if response.status_code == 401:
                raise PatroniError(f"{url}{path}: Patroni refused the credentials (401): check restapi.authentication")
            if response.status_code >= 400:
                raise PatroniError(f"{method} {path}: Patroni answered {response.status_code}: {response.text.strip()}")
            if text:
                return response.text.strip()
            return response.json()
        raise PatroniError(f"no Patroni REST API answered {method} {path}: " + "; ".join(failures))


def _member(item: Mapping[str, Any]) -> PatroniMember:
    lag = item.get("lag")
    return PatroniMember(
        name=str(item.get("name", "")),
        role=str(item.get("role", "")),
        state=str(item.get("state", "")),
        host=str(item.get("host", "")),
        port=int(item.get("port") or 0),
        timeline=int(item["timeline"]) if item.get("timeline") is not None else None,
        lag_bytes=int(lag) if isinstance(lag, int) else None,  # "unknown" when Patroni cannot tell
        api_url=str(item.get("api_url", "")),
        pending_restart=bool(item.get("pending_restart")),
        tags=dict(item.get("tags") or {}),
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None

"""Patroni's REST API through the adapter, against a real Patroni cluster (etcd + two PostgreSQL 15 nodes)."""

from __future__ import annotations

import time

import pytest

from hadr_portal.adapters.patroni import PatroniClient, PatroniError
from tests.infra.patroni import REST_PASSWORD, REST_USER, PatroniCluster

pytestmark = pytest.mark.xdist_group("patroni")  # one cluster, its tests one after the other


def client(patroni: PatroniCluster, *, dead_first: bool = False) -> PatroniClient:
    urls = (["http://127.0.0.1:9"] if dead_first else []) + patroni.rest_urls
    return PatroniClient(urls, username=REST_USER, password=REST_PASSWORD)


def until(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_the_cluster_state_comes_from_any_member_that_answers(patroni_cluster: PatroniCluster) -> None:
    state = client(patroni_cluster, dead_first=True).cluster()
    assert {member.name for member in state.members} == {"node1", "node2"}
    assert state.leader is not None and not state.paused
    replica = next(member for member in state.members if not member.is_leader)
    assert replica.state in ("running", "streaming") and replica.lag_bytes is not None


def test_without_credentials_patroni_refuses_to_act(patroni_cluster: PatroniCluster) -> None:
    leader = client(patroni_cluster).cluster().leader
    assert leader is not None
    with pytest.raises(PatroniError, match="refused the credentials"):
        PatroniClient(patroni_cluster.rest_urls).switchover(leader=leader.name)


def test_a_switchover_hands_the_leader_key_over_and_history_records_it(patroni_cluster: PatroniCluster) -> None:
    api = client(patroni_cluster)
    before = api.cluster()
    assert before.leader is not None
    candidate = next(member.name for member in before.members if not member.is_leader)
    started = time.monotonic()
    assert "switched over" in api.switchover(leader=before.leader.name, candidate=candidate).lower()
    until(lambda: (leader := api.cluster().leader) is not None and leader.name == candidate)
    assert time.monotonic() - started < 20
    change = until(lambda: api.history())[-1]
    assert change.timeline >= 1 and change.lsn > 0
    after = until(
        lambda: (
            (state := api.cluster()).leader
            and all(m.state in ("running", "streaming") for m in state.members)
            and state
        )
    )
    assert after.leader.timeline == (before.leader.timeline or 0) + 1


def test_pause_turns_automatic_failover_off_and_back_on(patroni_cluster: PatroniCluster) -> None:
    api = client(patroni_cluster)
    try:
        assert api.pause(True).get("pause") is True
        assert until(lambda: api.cluster().paused)
    finally:
        api.pause(False)
    assert until(lambda: not api.cluster().paused)


def test_an_action_is_never_sent_twice_to_two_members(patroni_cluster: PatroniCluster) -> None:
    """A member that took the request but did not answer in time is not followed by the next one: the action may
    have happened (a second switchover would be a second failover of the applications)."""
    api = PatroniClient(patroni_cluster.rest_urls, username=REST_USER, password=REST_PASSWORD, action_timeout=0.001)
    leader = api.cluster().leader
    assert leader is not None
    with pytest.raises(PatroniError, match="it may have happened"):
        api.switchover(leader=leader.name)
    # it may have switched: whatever happened, it happened once, and the cluster settles with one leader
    until(
        lambda: (
            (state := client(patroni_cluster).cluster()).leader
            and all(m.state in ("running", "streaming") for m in state.members)
        )
    )


def test_an_unknown_candidate_is_refused_in_patronis_words(patroni_cluster: PatroniCluster) -> None:
    api = client(patroni_cluster)
    leader = api.cluster().leader
    assert leader is not None
    with pytest.raises(PatroniError, match="Patroni answered 4"):
        api.switchover(leader=leader.name, candidate="no-such-member")

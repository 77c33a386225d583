"""``service.replication``: what one worker publishes and what another picks up, over a real
control directory (the registries' end of it is in test_repository.py)."""

from __future__ import annotations

import threading

from service import control
from service.replication import Replication


def test_an_action_reaches_the_other_workers_once_and_not_its_own(tmp_path):
    first, second = Replication(tmp_path, 0.01), Replication(tmp_path, 0.01)
    first.publish("m", "load", [2, 1])
    assert first.pending() == {}
    todo = second.pending()
    assert list(todo) == ["m"] and (todo["m"].action, todo["m"].versions) == ("load", (1, 2))
    assert second.pending() == {}
    second.publish("m", "unload")
    assert first.pending()["m"].action == "unload" and second.pending() == {}


def test_recorded_says_whether_the_repository_was_snapshotted(tmp_path):
    replication = Replication(tmp_path, 0.01)
    assert replication.recorded() == ({}, False)
    (tmp_path / "models" / "m" / "3").mkdir(parents=True)
    control.snapshot(tmp_path, tmp_path / "models")
    actions, snapshotted = replication.recorded()
    assert snapshotted and actions["m"].versions == (3,)


def test_the_follower_calls_sync_at_once_and_then_every_poll(tmp_path):
    calls, polled = [], threading.Event()

    def sync():
        calls.append(1)
        if len(calls) >= 3:
            polled.set()

    thread = Replication(tmp_path / "control", 0.01).follow(sync)
    assert thread is not None and thread.daemon and calls
    assert polled.wait(10)
    assert (tmp_path / "control").is_dir()


def test_without_a_directory_nothing_is_replicated(tmp_path):
    replication = Replication(None, 0.01)
    replication.publish("m", "load", [1])
    assert not replication.enabled and replication.pending() == {}
    assert replication.follow(lambda: None) is None and list(tmp_path.iterdir()) == []

"""The standing worker team behind batch_split.in_parallel: results in order, failures re-raised in the caller
after every task has finished, and a busy team (a nested split, another thread's run) never waited for: the
caller then runs its tasks itself."""
import threading

import pytest

from cnngraph.backends.numpy_backend import batch_split, handoff


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(batch_split, "WORKERS", 2)


def test_results_come_back_in_task_order_and_run_on_two_threads(two_workers):
    seen = []

    def task(value):
        seen.append(threading.get_ident())
        return value
    for _ in range(50):
        assert batch_split.in_parallel([lambda: task("first"), lambda: task("second")]) == ["first", "second"]
    assert len(set(seen)) == 2 and seen.count(threading.get_ident()) == 50


def test_a_failure_in_either_task_is_raised_after_both_have_finished(two_workers):
    finished = []

    def slow_ok():
        threading.Event().wait(0.01)
        finished.append("ok")

    def fail():
        raise ValueError("part broke")
    for tasks in ([fail, slow_ok], [slow_ok, fail]):
        with pytest.raises(ValueError, match="part broke"):
            batch_split.in_parallel(tasks)
        assert finished.pop() == "ok"
    assert batch_split.in_parallel([lambda: 1, lambda: 2]) == [1, 2]     # the team was released


def test_a_nested_split_runs_its_tasks_in_its_own_thread_instead_of_waiting(two_workers):
    def outer(tag):
        threads = []

        def inner(part):
            threads.append(threading.get_ident())
            return f"{tag}.{part}"
        return batch_split.in_parallel([lambda: inner("a"), lambda: inner("b")]), threads, threading.get_ident()
    results = batch_split.in_parallel([lambda: outer("x"), lambda: outer("y")])
    assert [names for names, _, _ in results] == [["x.a", "x.b"], ["y.a", "y.b"]]
    assert all(threads == [own, own] for _, threads, own in results)     # the team was busy: no third thread
    assert results[0][2] != results[1][2]


def test_a_claimed_team_turns_away_a_second_claim():
    team = handoff.team(1)
    claimed = team.claim(1)
    assert claimed is team and team.claim(1) is None and team.claim(0) is None
    assert claimed.run([lambda: "mine", lambda: "worker's"]) == ["mine", "worker's"]
    assert team.claim(2) is None                       # more tasks than workers
    assert team.claim(1).run([lambda: 3, lambda: 4]) == [3, 4]


def test_callers_in_several_threads_all_get_their_own_results(two_workers):
    results, errors = {}, []

    def caller(index):
        try:
            for round_ in range(30):
                got = batch_split.in_parallel([lambda r=round_: (index, r, 0), lambda r=round_: (index, r, 1)])
                assert got == [(index, round_, 0), (index, round_, 1)]
            results[index] = True
        except Exception as error:              # surfaced below, in the test's thread
            errors.append(error)
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [0, 1, 2, 3]

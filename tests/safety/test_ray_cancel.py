"""The Ray engine cancels its tasks when the run stops (a stand-in ``ray`` module records the calls)."""

from __future__ import annotations

import signal
import sys
import types

import pytest

from grounding_convert.engine import ray_engine
from grounding_convert.engine.signals import Interrupted


class FakeRay(types.ModuleType):
    def __init__(self):
        super().__init__("ray")
        self.calls: list[tuple] = []
        self.initialized = False

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.initialized = True
        self.calls.append(("init",))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as ray.init replaces the SIGTERM handler

    def remote(self, function):
        fake = self

        class Remote:
            @staticmethod
            def remote(job, partition):
                return f"ref{partition}"

        fake.function = function
        return Remote

    def wait(self, pending, num_returns):
        return pending[:num_returns], pending[num_returns:]

    def get(self, ref):
        return {"ref": ref}

    def cancel(self, ref, force):
        self.calls.append(("cancel", ref, force))

    def shutdown(self):
        self.calls.append(("shutdown",))


@pytest.fixture(autouse=True)
def _keep_sigterm_handler():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("stop", [Interrupted(signal.SIGTERM), RuntimeError("max-rejects")])
def test_stopping_the_run_cancels_every_pending_task_and_shuts_ray_down(monkeypatch, stop):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    results = ray_engine.run_ray(object(), [0, 1, 2, 3], workers=2)
    assert next(results) == {"ref": "ref0"}
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # ours again after ray.init
    with pytest.raises(type(stop)):
        results.throw(stop)
    assert fake.calls == [("init",), *(("cancel", f"ref{i}", True) for i in (1, 2, 3)), ("shutdown",)]

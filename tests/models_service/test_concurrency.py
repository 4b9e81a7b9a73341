import asyncio
import threading

import pytest

from models_service.concurrency import run_blocking


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


async def boom():
    raise ValueError("inner")


def test_runs_without_a_loop():
    assert run_blocking(double(3)) == 6


def test_runs_inside_a_running_loop_and_propagates_errors():
    async def caller():
        assert run_blocking(double(4)) == 8
        with pytest.raises(ValueError, match="inner"):
            run_blocking(boom())
        return True

    # a thread of its own: the test thread may already run a loop (Playwright's, after browser tests)
    result = {}
    thread = threading.Thread(target=lambda: result.update(ok=asyncio.run(caller())))
    thread.start()
    thread.join()
    assert result == {"ok": True}

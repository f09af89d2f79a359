"""server/workers.py + server/supervisor.py: the bus between worker processes, with real processes and sockets.

A supervisor (in a forked child of the test) runs 3 workers; each broadcasts numbered messages, and records what
it receives. Every worker gets every other worker's messages, each sender's in order, none of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from pyldapd.server.log import Logger
from pyldapd.server.supervisor import Supervisor, WorkerContext
from pyldapd.server.workers import ProcessBus
from tests.servers import child_pids, wait_for

MESSAGES = 300


def run_bus_worker(context: WorkerContext, out: Path) -> int:
    async def main() -> None:
        bus = ProcessBus(context.index, context.count, context.sock)
        received: dict[int, list[int]] = {}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        bus.subscribe("n", lambda sender, payload: received.setdefault(sender, []).append(int(payload)))
        bus.attach(loop)
        bus.tell_supervisor("_ready")
        await asyncio.sleep(0.5)  # the others attached too (messages sent before wait in the sockets anyway)
        for number in range(MESSAGES):
            bus.broadcast("n", str(number).encode())
            if number % 50 == 0:
                await asyncio.sleep(0)
        deadline = loop.time() + 20
        while sum(map(len, received.values())) < MESSAGES * (context.count - 1) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        (out / f"{context.index}.json").write_text(json.dumps({str(k): v for k, v in received.items()}))
        await stop.wait()
        bus.close()

    asyncio.run(main())
    return 0


def test_every_worker_gets_every_other_workers_messages_in_order(tmp_path):
    pid = os.fork()
    if pid == 0:  # the supervisor
        code = 1
        try:
            log = Logger(0)
            code = Supervisor(
                3, log, None, lambda context: run_bus_worker(context, tmp_path), lambda: None
            ).run()
        finally:
            os._exit(code)
    try:
        wait_for(lambda: len(list(tmp_path.glob("*.json"))) == 3, 30, what="3 workers' reports")
        for index in range(3):
            received = {int(k): v for k, v in json.loads((tmp_path / f"{index}.json").read_text()).items()}
            assert sorted(received) == [i for i in range(3) if i != index]
            for sender, numbers in received.items():
                assert numbers == list(range(MESSAGES)), (index, sender)
        workers = child_pids(pid)
        assert len(workers) == 3
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for worker in workers:
        assert not os.path.exists(f"/proc/{worker}") or open(f"/proc/{worker}/stat").read().split()[2] == "Z"

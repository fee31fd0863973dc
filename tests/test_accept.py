"""Accepting connections when the process runs out of descriptors, on a real listening socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

# Runs in a process of its own: it uses up its descriptors, and a test must not do that to pytest.
CHILD = textwrap.dedent("""
    import asyncio, errno, json, socket, sys, time
    from chatbot.accept import add_patient_accept_handler

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
        told, accepted = [], []
        add_patient_accept_handler(listener, lambda conn, address: accepted.append(conn),
                                   lambda error: told.append(errno.errorcode[error.errno]))
        fillers = []
        try:
            while True:
                fillers.append(open("/dev/null"))
        except OSError:
            pass
        print(listener.getsockname()[1], flush=True)
        await asyncio.sleep(0.3)  # the clients connect meanwhile
        cpu = time.process_time()
        await asyncio.sleep(2.0)
        cpu = time.process_time() - cpu
        waited = len(accepted)
        for filler in fillers:
            filler.close()
        await asyncio.sleep(1.0)
        print(json.dumps({"told": told, "waited": waited, "accepted": len(accepted), "cpu": cpu}), flush=True)

    asyncio.run(main())
""")


def test_out_of_descriptors_accepting_pauses_and_resumes_once_they_are_free():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # they wait in the backlog
        result = json.loads(child.stdout.readline())
        assert child.wait(10) == 0
    finally:
        child.kill()
    for client in clients:
        client.close()
    assert result["waited"] == 0, "nothing could be accepted without a descriptor"
    assert result["cpu"] < 0.5, f"{result['cpu']:.2f} s of CPU in 2 s: accepting spun instead of pausing"
    assert 2 <= len(result["told"]) <= 6 and set(result["told"]) == {"EMFILE"}, "told once per half-second pause"
    assert result["accepted"] == 3, "the waiting connections were accepted once descriptors were free"


"""A user's first commands after an install, in one process; prints (JSON) the kernels numba
had to compile for them: `medsentry.warmup.compiled()`.

    python warmup_probe.py COMMANDS.json

COMMANDS.json: a list of medsentry argument lists, run in order as the CLI runs them. A command
starting with "monitor" gets UDP datagrams on the loopback interface while it captures.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import threading

from medsentry.cli import main as cli
from medsentry.warmup import compiled


def run(args: list[str]) -> None:
    stop = threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            while not stop.wait(0.02):
                tx.sendto(b"probe", ("127.0.0.1", 9))

    sender = threading.Thread(target=send, daemon=True)
    if args[0] == "monitor":
        sender.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cli(args, standalone_mode=False)
    finally:
        stop.set()
        if sender.is_alive():
            sender.join()


def main() -> None:
    with open(sys.argv[1]) as fh:
        commands = json.load(fh)
    for args in commands:
        run(args)
    print(json.dumps(compiled()))


if __name__ == "__main__":
    main()

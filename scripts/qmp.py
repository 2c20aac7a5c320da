#!/usr/bin/env python3
"""A minimal QMP client (standard library only) for the project's scripts.

    qmp.py SOCKET hmp 'info pci'        run an HMP command, print its output
    qmp.py SOCKET quit                  ask QEMU to exit
    qmp.py SOCKET wait                  wait until QEMU accepts QMP
"""

import json
import socket
import sys
import time


class QMP:
    def __init__(self, path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise SystemExit(f"qmp: no QEMU listening on {path}")
                time.sleep(0.1)
        self.file = self.sock.makefile("rw")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise SystemExit("qmp: QEMU closed the connection")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command, **arguments):
        req = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        self.file.write(json.dumps(req) + "\n")
        self.file.flush()
        resp = self._read()
        if "error" in resp:
            raise RuntimeError(f"{command}: {resp['error']['desc']}")
        return resp["return"]

    def hmp(self, command_line):
        return self.execute("human-monitor-command", **{"command-line": command_line})


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    qmp = QMP(sys.argv[1])
    verb = sys.argv[2]
    if verb == "hmp":
        sys.stdout.write(qmp.hmp(" ".join(sys.argv[3:])))
    elif verb == "quit":
        try:
            qmp.execute("quit")
        except SystemExit:
            pass
    elif verb != "wait":
        raise SystemExit(f"qmp: unknown verb {verb}")


if __name__ == "__main__":
    main()

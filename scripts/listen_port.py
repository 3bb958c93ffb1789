#!/usr/bin/python3
"""Prints a free TCP port on 127.0.0.1 for a server that must be able to
listen on it again after a restart (scripts/cluster.sh's replicas and nginx,
scripts/pg_throwaway.sh's PostgreSQL).

A port the kernel hands out for port 0 comes from its ephemeral range, the
same range it takes the source ports of outgoing connections from: once the
server is killed, any connection made in the meantime (on a busy CI machine,
many a second) can be given that port, and the restarted server cannot bind
it. So the port is drawn below that range, where only servers asking for a
port by number go, and checked bindable now. When there is no room below the
range, the kernel's choice is printed instead.

Usage: listen_port.py [COUNT]   prints COUNT distinct ports, one per line
"""
import random
import socket
import sys

FLOOR = 10000  # below: well-known and registered ports others may expect


def ephemeral_floor():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    top = ephemeral_floor()
    chosen = []
    for _ in range(1000):
        if len(chosen) == count:
            break
        port = bindable(random.randrange(FLOOR, top) if top - FLOOR >= 1000 else 0)
        if port is not None and port not in chosen:
            chosen.append(port)
    if len(chosen) < count:
        sys.exit("listen_port.py: no free port found")
    print("\n".join(map(str, chosen)))


if __name__ == "__main__":
    main()

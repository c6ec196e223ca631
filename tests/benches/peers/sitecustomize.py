"""Loopback guard of the peer benchmark (tests/benches/peers.rs puts this folder on PYTHONPATH).

The peers (aws_ir, libcloudforensics) reach the local emulator through boto3's
AWS_ENDPOINT_URL (boto3 >= 1.28, both venvs have a recent one). This makes sure nothing else is
reached: a connection to any address outside 127.0.0.0/8 and ::1 (an endpoint that was not
overridden, the instance metadata service) fails with PermissionError, so such a peer fails
visibly instead of measuring something else. Unix sockets are left alone.
"""
import ipaddress
import os
import socket

if os.environ.get("IRR_PEER_LOOPBACK_ONLY") == "1":
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                ok = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                ok = False  # a name: resolved names go through getaddrinfo first, not here
            if not ok:
                raise PermissionError(
                    "peer benchmark: connection to {0} refused (loopback only)".format(address))

    def connect(self, address):
        _check(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex

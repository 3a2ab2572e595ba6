"""A packet capture on the guests' bridge: what a neighbour on the port group could read off the wire.

A raw AF_PACKET socket bound to the bridge, in promiscuous mode: the bridge
passes up every frame it forwards between two guests only when it is
promiscuous (Linux's br_handle_frame_finish), so without it the capture would
see the host's own traffic and miss the guest-to-guest gRPC it is there for.
TCP payloads are reassembled per direction by sequence number, so a secret cut
across two segments is still found. Nothing beyond the standard library: no
tcpdump on the testbed's machines.
"""

import secrets
import shlex
import socket
import struct
import threading
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
IPPROTO_TCP = 6
FRAME_BUFFER = 65536


class BridgeCapture:
    """Every IPv4 TCP payload crossing `bridge` between start and stop, reassembled per direction.

        with BridgeCapture(guests.network.bridge) as capture:
            ...
        assert not capture.streams_containing(secret)
    """

    def __init__(self, bridge):
        self.bridge = bridge
        self.frames = 0
        self._segments = {}  # (source, source port, destination, destination port) -> {sequence number: payload}
        self._socket = None
        self._thread = None
        self._stopping = threading.Event()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._socket.bind((self.bridge, 0))
        membership = struct.pack("iHH8s", socket.if_nametoindex(self.bridge), PACKET_MR_PROMISC, 0, b"")
        self._socket.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name=f"capture-{self.bridge}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop reading (again: a no-op); what was read stays."""
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()  # closing drops the membership: the bridge leaves promiscuous mode

    def _read(self):
        while not self._stopping.is_set():
            try:
                frame = self._socket.recv(FRAME_BUFFER)
            except socket.timeout:
                continue
            except OSError:
                return  # the bridge went away with its guests
            self.frames += 1
            self._keep_tcp_payload(frame)

    def _keep_tcp_payload(self, frame):
        if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
            return
        ip_header = frame[14:]
        header_length = (ip_header[0] & 0x0F) * 4
        total_length = struct.unpack("!H", ip_header[2:4])[0]
        if ip_header[9] != IPPROTO_TCP:
            return
        tcp = ip_header[header_length:total_length]
        if len(tcp) < 20:
            return
        source_port, destination_port, sequence = struct.unpack("!HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            flow = (socket.inet_ntoa(ip_header[12:16]), source_port, socket.inet_ntoa(ip_header[16:20]),
                    destination_port)
            self._segments.setdefault(flow, {})[sequence] = bytes(payload)

    def streams(self):
        """{flow: the bytes it carried, in sequence order}; a retransmitted segment counts once."""
        return {flow: b"".join(segments[sequence] for sequence in sorted(segments))
                for flow, segments in list(self._segments.items())}

    def streams_containing(self, needle):
        """The flows whose bytes hold `needle` (bytes or str), as "address:port -> address:port"."""
        needle = needle.encode() if isinstance(needle, str) else needle
        return sorted(f"{source}:{source_port} -> {destination}:{destination_port}"
                      for (source, source_port, destination, destination_port), data in self.streams().items()
                      if needle in data)

    def ports_between(self, addresses):
        """The TCP ports the flows among `addresses` were served on (the lower of the two ends of each)."""
        addresses = set(addresses)
        return sorted({min(source_port, destination_port)
                       for source, source_port, destination, destination_port in self._segments
                       if source in addresses and destination in addresses})


def what_crossed_in_clear(capture, sender_ip, receiver_ip, key_path, secret):
    """Stop `capture` after a marker crossed the bridge in clear from one guest to another; what it read.

    {"marker": where the marker was found (the receiver's SSH port, if the capture reads guest-to-guest bytes),
     "ports": the ports served among the two guests, "secret": the flows that carried `secret` in clear}.
    """
    from testbed.guests import ssh  # the capture itself needs no guest

    marker = secrets.token_hex(32)
    send = (f"import socket; s = socket.create_connection(({receiver_ip!r}, 22)); s.recv(64); "
            f"s.sendall(b'{marker}\\r\\n')")
    sent = ssh(sender_ip, key_path, shlex.join(["python3", "-c", send]))
    assert sent.returncode == 0, sent.stderr
    time.sleep(1)
    capture.stop()
    return {"marker": [flow.split(" -> ")[1] for flow in capture.streams_containing(marker)],
            "ports": capture.ports_between([sender_ip, receiver_ip]),
            "secret": capture.streams_containing(secret)}

"""python-hyper's h2 as a client against lib/h2's server connection (test/h2/python-peer.test.ts).

Usage: h2_peer_client.py HOST PORT. Runs the scenarios on one connection and prints one JSON
line per finished stream, then one for how the connection ended:
  {"stream": id, "status": ..., "body_len": n, "body_head": str, "trailers": [[k, v], ...], "reset": code|null}
  {"goaway": {"last_stream_id": n, "error_code": n}}  or  {"closed": "eof"}
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events

from h2_peer_send import send_pending

host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port))
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
sock.sendall(conn.data_to_send())

REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "peer"), (":path", "/echo"), ("te", "trailers")]
streams = {}  # id -> result
pending = {}  # id -> bytes still to send, then trailers


def out(obj):
    print(json.dumps(obj), flush=True)


def pump():
    send_pending(conn, sock, pending, [("x-client-trailer", "sent")])


def start(body, reset=False):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, REQUEST)
    streams[sid] = {"stream": sid, "status": None, "body_len": 0, "body_head": "", "trailers": None, "reset": None}
    if reset:
        # A client cancel in the middle of its request.
        conn.send_data(sid, b"partial")
        conn.reset_stream(sid, error_code=8)
        streams[sid]["reset"] = 8
        sock.sendall(conn.data_to_send())
        out(streams.pop(sid))
        return
    pending[sid] = body
    pump()


# 1: a small request with trailers; 3: a request the client resets; 5: 3 MiB, more than the
# server's windows, so it moves only as the server returns window; 7: a request after the reset.
start(b"hello " * 10)
start(b"", reset=True)
start(bytes(range(256)) * (3 * 4096))
start(b"after the reset")

while True:
    data = sock.recv(65536)
    if not data:
        out({"closed": "eof"})
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            streams[event.stream_id]["status"] = dict(event.headers).get(":status")
        elif isinstance(event, h2.events.DataReceived):
            s = streams[event.stream_id]
            if s["body_len"] == 0:
                s["body_head"] = event.data[:32].decode("latin1")
            s["body_len"] += len(event.data)
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            streams[event.stream_id]["trailers"] = [list(h) for h in event.headers]
        elif isinstance(event, h2.events.StreamEnded):
            out(streams.pop(event.stream_id))
        elif isinstance(event, h2.events.StreamReset):
            s = streams.pop(event.stream_id, None)
            if s is not None:
                s["reset"] = event.error_code
                out(s)
        elif isinstance(event, h2.events.ConnectionTerminated):
            out({"goaway": {"last_stream_id": event.last_stream_id, "error_code": int(event.error_code)}})
    pump()

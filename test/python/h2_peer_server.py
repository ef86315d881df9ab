"""python-hyper's h2 as a server against lib/h2's client connection (test/h2/python-peer.test.ts).

Listens on 127.0.0.1, prints {"port": n}, then serves each connection by the request's :path:
  /echo    200, the request body echoed (sent as the client's windows allow), trailers
  /reset   RST_STREAM(CANCEL) once the request's headers are in
  /hold    answered only when a /goaway request arrives on the same connection
  /goaway  GOAWAY with last stream id = the held stream, then the held stream is answered
"""
import json
import socket
import struct
import sys
import threading

import h2.config
import h2.connection
import h2.events

from h2_peer_send import send_pending


def serve(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths, bodies, pending, held = {}, {}, {}, []

    def answer(sid, body):
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
        pending[sid] = body

    def pump():
        send_pending(conn, sock, pending, [("grpc-status", "0"), ("x-server-trailer", "done")])

    while True:
        data = sock.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                path = dict(event.headers)[":path"]
                paths[event.stream_id] = path
                bodies[event.stream_id] = b""
                if path == "/reset":
                    conn.reset_stream(event.stream_id, error_code=8)
                elif path == "/hold":
                    held.append(event.stream_id)
                elif path == "/goaway":
                    # python h2's close_connection() would refuse to send anything after its
                    # GOAWAY, so the frame goes out raw and the held stream is answered after it.
                    sock.sendall(struct.pack(">I", 8)[1:] + bytes([0x7, 0]) + struct.pack(">III", 0, held[0], 0))
                    answer(held[0], b"held")
            elif isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                if paths.get(event.stream_id) == "/echo":
                    answer(event.stream_id, bodies[event.stream_id])
        pump()


def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

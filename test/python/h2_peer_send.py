"""Sending with python-hyper's h2 as the peer's windows allow (shared by h2_peer_client.py and
h2_peer_server.py): bodies wait in `pending` until the stream and connection windows and the
peer's max frame size let them out; each ends with `trailers` once it is all sent."""


def send_pending(conn, sock, pending, trailers):
    for sid in list(pending):
        body = pending[sid]
        while body:
            n = min(len(body), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if n <= 0:
                break
            conn.send_data(sid, body[:n])
            body = body[n:]
        pending[sid] = body
        if not body:
            del pending[sid]
            conn.send_headers(sid, trailers, end_stream=True)
    sock.sendall(conn.data_to_send())

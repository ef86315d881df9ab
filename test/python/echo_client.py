#!/usr/bin/env python3
"""Drive the test Echo service (test/protos/echo.proto) with grpcio, directly or through fngate.

The TypeScript tests spawn this with the venv's python (.cache/venv/bin/python, from
`make tools`) to check the gateway against a second, independent gRPC implementation.

    echo_client.py --target HOST:PORT [--tls-ca FILE [--tls-server-name NAME]] [--tls]
                   [-H key=value ...] [--timeout SECONDS] MODE [mode options]

    unary         --calls N --payload-size BYTES     N unary calls on one channel
    client-stream --total-bytes N --chunk-size N     one call, data generated as it is sent
    server-stream --count N --reply-size N           one call, N replies of N bytes
    bidi          --count N --payload-size N [--pipeline]
                                                     one call, N requests; each is sent after
                                                     the previous reply arrived, unless --pipeline
    channels      --channels N --calls-per-channel M [--payload-size BYTES]
                                                     N channels (N connections), M unary calls each,
                                                     made in order; all stay open until the end
    loop          --duration SECONDS --interval-ms N unary calls on one channel, one every N ms,
                                                     for SECONDS (a long-lived client)

The connection options may also follow MODE. -H values of `-bin` keys are given in base64.
--timeout sets a deadline (grpc-timeout) on each call; without it calls have none.

Prints one JSON object, {"calls": [...]}, one entry per call, in order:
    code ("OK" or the status name), code_value, details, backend / received_bytes /
    received_messages / backend_metadata (from the first reply, null without one), replies,
    reply_bytes (payload bytes of all replies), initial_metadata, trailing_metadata
    ({key: value}; `-bin` values in base64; repeated keys joined with ", "), channel, elapsed_ms,
    started_at_ms (wall clock, ms since the epoch).
Exits 0 whatever the calls' statuses (they are the data); 2 on usage errors.
"""

import argparse
import base64
import binascii
import json
import os
import sys
import threading
import time

import grpc

PROTOS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "protos")
sys.path.append(os.path.normpath(PROTOS_DIR))
echo_pb2, echo_pb2_grpc = grpc.protos_and_services("echo.proto")

PATTERN = bytes(range(256)) * 256  # 64 KiB of recognisable bytes


def payload(size):
    """`size` bytes of the repeating 0..255 pattern."""
    if size <= len(PATTERN):
        return PATTERN[:size]
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def parse_header(text):
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    if key.endswith("-bin"):
        try:
            return key, base64.b64decode(value, validate=True)
        except binascii.Error:
            raise argparse.ArgumentTypeError(f"{key}: value of a -bin key must be base64")
    return key, value


def metadata_dict(metadata):
    out = {}
    for key, value in metadata or ():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class Channels:
    """Opens channels with the command line's target, credentials and options."""

    def __init__(self, args):
        self.args = args
        self.credentials = None
        if args.tls or args.tls_ca:
            root = None
            if args.tls_ca:
                with open(args.tls_ca, "rb") as f:
                    root = f.read()
            self.credentials = grpc.ssl_channel_credentials(root_certificates=root)

    def open(self, index):
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.enable_http_proxy", 0),
            # One connection per channel: without these, channels with the same target and
            # options share a subchannel (and so a TCP connection) process-wide.
            ("grpc.use_local_subchannel_pool", 1),
            ("fngate.test.channel", index),
        ]
        if self.args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.args.tls_server_name))
        if self.credentials is not None:
            return grpc.secure_channel(self.args.target, self.credentials, options=options)
        return grpc.insecure_channel(self.args.target, options=options)


class Result:
    """One call's outcome, filled in as replies arrive."""

    def __init__(self, channel):
        self.channel = channel
        self.first = None
        self.replies = 0
        self.reply_bytes = 0
        self.started = time.monotonic()
        self.started_wall = time.time()

    def reply(self, message):
        if self.first is None:
            self.first = message
        self.replies += 1
        self.reply_bytes += len(message.payload)

    def finish(self, call):
        """`call` is the grpc.Call (or the grpc.RpcError, which is one) once it has ended."""
        code = call.code() or grpc.StatusCode.UNKNOWN
        first = self.first
        return {
            "code": code.name,
            "code_value": code.value[0],
            "details": call.details() or "",
            "backend": first.backend if first is not None else None,
            "received_bytes": first.received_bytes if first is not None else None,
            "received_messages": first.received_messages if first is not None else None,
            "backend_metadata": first.metadata if first is not None else None,
            "replies": self.replies,
            "reply_bytes": self.reply_bytes,
            "initial_metadata": metadata_dict(call.initial_metadata()),
            "trailing_metadata": metadata_dict(call.trailing_metadata()),
            "channel": self.channel,
            "started_at_ms": int(self.started_wall * 1000),
            "elapsed_ms": round((time.monotonic() - self.started) * 1000, 3),
        }


def unary_call(stub, args, channel, size):
    result = Result(channel)
    try:
        reply, call = stub.Unary.with_call(
            echo_pb2.EchoRequest(payload=payload(size)),
            metadata=args.headers, timeout=args.timeout)
        result.reply(reply)
    except grpc.RpcError as error:
        call = error
    return result.finish(call)


def client_stream_call(stub, args):
    result = Result(0)

    def requests():
        chunk = payload(args.chunk_size)
        left = args.total_bytes
        while left > 0:
            n = min(left, len(chunk))
            left -= n
            yield echo_pb2.EchoRequest(payload=chunk if n == len(chunk) else chunk[:n])

    try:
        reply, call = stub.ClientStream.with_call(
            requests(), metadata=args.headers, timeout=args.timeout)
        result.reply(reply)
    except grpc.RpcError as error:
        call = error
    return result.finish(call)


def drain(call, result, on_reply=None):
    """Reads a response stream to its end; returns the call (which the error is)."""
    try:
        for reply in call:
            result.reply(reply)
            if on_reply is not None:
                on_reply()
    except grpc.RpcError as error:
        return error
    return call


def server_stream_call(stub, args):
    result = Result(0)
    call = stub.ServerStream(
        echo_pb2.EchoRequest(count=args.count, reply_size=args.reply_size),
        metadata=args.headers, timeout=args.timeout)
    return result.finish(drain(call, result))


def bidi_call(stub, args):
    result = Result(0)
    progress = threading.Condition()
    done = False

    def requests():
        message = echo_pb2.EchoRequest(payload=payload(args.payload_size))
        for i in range(args.count):
            yield message
            if not args.pipeline:
                with progress:  # ping-pong: the next request waits for this one's reply
                    progress.wait_for(lambda: done or result.replies > i)
                    if done:
                        return

    def on_reply():
        with progress:
            progress.notify_all()

    call = stub.Bidi(requests(), metadata=args.headers, timeout=args.timeout)
    ended = drain(call, result, on_reply)
    with progress:
        done = True
        progress.notify_all()
    return result.finish(ended)


def add_connection_options(parser, prefix):
    def add(*flags, **kwargs):
        parser.add_argument(*flags, dest=prefix + kwargs.pop("dest"), **kwargs)
    add("--target", dest="target", metavar="HOST:PORT", help="the server (required)")
    add("--tls", dest="tls", action="store_true", help="TLS with the system's CAs")
    add("--tls-ca", dest="tls_ca", metavar="FILE", help="TLS, trusting this CA (PEM)")
    add("--tls-server-name", dest="tls_server_name", metavar="NAME",
        help="name to expect in the server certificate (and SNI)")
    add("-H", dest="headers", action="append", type=parse_header, default=[],
        metavar="KEY=VALUE", help="request metadata (repeatable; -bin values in base64)")
    add("--timeout", dest="timeout", type=float, metavar="SECONDS", help="per-call deadline")


def main():
    parser = argparse.ArgumentParser(
        description="gRPC client for the fngate test Echo service; prints one JSON object.")
    add_connection_options(parser, "")
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    late = argparse.ArgumentParser(add_help=False)  # the same options, after MODE too
    add_connection_options(late, "late_")

    p = modes.add_parser("unary", parents=[late], help="N unary calls on one channel")
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--payload-size", type=int, default=0)
    p = modes.add_parser("client-stream", parents=[late], help="one client-streaming call")
    p.add_argument("--total-bytes", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=16384)
    p = modes.add_parser("server-stream", parents=[late], help="one server-streaming call")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--reply-size", type=int, default=0)
    p = modes.add_parser("bidi", parents=[late], help="one bidirectional call")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--payload-size", type=int, default=0)
    p.add_argument("--pipeline", action="store_true",
                   help="send every request without waiting for replies")
    p = modes.add_parser("loop", parents=[late], help="unary calls on one channel for a while")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--payload-size", type=int, default=0)
    p = modes.add_parser("channels", parents=[late], help="N channels, M unary calls each")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--calls-per-channel", type=int, default=1)
    p.add_argument("--payload-size", type=int, default=0)
    args = parser.parse_args()
    for name in ("target", "tls", "tls_ca", "tls_server_name", "timeout"):
        value = getattr(args, "late_" + name)
        if value not in (None, False):
            setattr(args, name, value)
    args.headers += args.late_headers
    if not args.target:
        parser.error("the following arguments are required: --target")

    for name in ("calls", "payload_size", "total_bytes", "count", "reply_size",
                 "channels", "calls_per_channel", "duration", "interval_ms"):
        if getattr(args, name, 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if getattr(args, "chunk_size", 1) < 1:
        parser.error("--chunk-size must be at least 1")
    if args.tls_server_name and not (args.tls or args.tls_ca):
        parser.error("--tls-server-name needs --tls-ca or --tls")

    factory = Channels(args)
    calls = []
    if args.mode == "channels":
        channels = [factory.open(i) for i in range(args.channels)]
        try:
            for i, channel in enumerate(channels):
                stub = echo_pb2_grpc.EchoStub(channel)
                for _ in range(args.calls_per_channel):
                    calls.append(unary_call(stub, args, i, args.payload_size))
        finally:
            for channel in channels:
                channel.close()
    else:
        with factory.open(0) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            if args.mode == "unary":
                for _ in range(args.calls):
                    calls.append(unary_call(stub, args, 0, args.payload_size))
            elif args.mode == "client-stream":
                calls.append(client_stream_call(stub, args))
            elif args.mode == "loop":
                until = time.monotonic() + args.duration
                while time.monotonic() < until:
                    calls.append(unary_call(stub, args, 0, args.payload_size))
                    time.sleep(args.interval_ms / 1000)
            elif args.mode == "server-stream":
                calls.append(server_stream_call(stub, args))
            else:
                calls.append(bidi_call(stub, args))

    json.dump({"calls": calls}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Call the example Greeter function through fngate with grpcio (pip install grpcio grpcio-tools).

    FNGATE_API_KEY=... FNGATE_FUNCTION_ID=... python3 examples/python/greeter_client.py

FNGATE_ADDR (default localhost:10081); FNGATE_TLS=1 for TLS, FNGATE_CA=ca.pem to trust a CA.
"""
import os
import sys

import grpc

# Compile protos/greeter.proto at run time (no generated code to keep in sync).
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "protos"))
pb, services = grpc.protos_and_services("greeter.proto")

addr = os.environ.get("FNGATE_ADDR", "localhost:10081")
api_key = os.environ.get("FNGATE_API_KEY")
function_id = os.environ.get("FNGATE_FUNCTION_ID")
if not api_key or not function_id:
    sys.exit("set FNGATE_API_KEY and FNGATE_FUNCTION_ID (fngate local prints both)")

# Every call carries the key and the function to invoke (the NVCF metadata contract).
metadata = [("authorization", f"Bearer {api_key}"), ("function-id", function_id)]


def reqid(call):
    """The session id fngate adds to the response headers (or to the trailers on errors)."""
    for key, value in (call.initial_metadata() or ()) + (call.trailing_metadata() or ()):
        if key == "nvcf-reqid":
            return value
    return "none"


if os.environ.get("FNGATE_TLS") == "1":
    ca = open(os.environ["FNGATE_CA"], "rb").read() if os.environ.get("FNGATE_CA") else None
    channel = grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca))
else:
    channel = grpc.insecure_channel(addr)

with channel:
    greeter = services.GreeterStub(channel)
    try:
        reply, call = greeter.SayHello.with_call(pb.HelloRequest(name="fngate"), metadata=metadata)
        print(f"SayHello: {reply.message}")
        print(f"  (nvcf-reqid: {reqid(call)})")

        call = greeter.SayHelloStream(pb.HelloStreamRequest(name="fngate", count=3), metadata=metadata)
        for reply in call:
            print(f"SayHelloStream: {reply.message}")
        print(f"  (nvcf-reqid: {reqid(call)})")

        call = greeter.Chat(iter([pb.HelloRequest(name="Alice"), pb.HelloRequest(name="Bob")]),
                            metadata=metadata)
        for reply in call:
            print(f"Chat: {reply.message}")
        print(f"  (nvcf-reqid: {reqid(call)})")
    except grpc.RpcError as error:
        sys.exit(f"call failed: {error.code().name}: {error.details()}  (nvcf-reqid: {reqid(error)})")

"""python-hyper's hpack as a peer for the HPACK differential tests.

One JSON request per stdin line, one JSON answer per stdout line. Strings are latin1 (code
points 0-255 stand for octets), so every octet value round-trips through JSON.

  {"op": "decode", "tableSize": N, "blocks": ["<hex>", ...]}
      decodes the blocks in order with one decoder that allows a table of N octets;
      answers {"lists": [[[name, value], ...], ...]} or {"error": "..."}
  {"op": "encode", "steps": [{"tableSize": N} | {"fields": [[name, value], ...]}, ...]}
      encodes each field list in order with one encoder (tableSize: a SETTINGS change the
      encoder follows, announced in the next block); answers {"blocks": ["<hex>", ...]}
"""
import json
import sys

from hpack import Decoder, Encoder


def decode(req):
    decoder = Decoder()
    decoder.max_allowed_table_size = req["tableSize"]
    decoder.max_header_list_size = 1 << 30
    lists = []
    for block in req["blocks"]:
        fields = decoder.decode(bytes.fromhex(block), raw=True)
        lists.append([[n.decode("latin1"), v.decode("latin1")] for n, v in fields])
    return {"lists": lists}


def encode(req):
    encoder = Encoder()
    blocks = []
    for step in req["steps"]:
        if "tableSize" in step:
            # hpack 4.1.0's table clears its pending size update when the same size is set
            # again (resized = new != old), then uses the new size unannounced, against RFC 7541
            # 4.2. A second SETTINGS of the same value changes nothing, so it is not passed on.
            if step["tableSize"] != encoder.header_table_size:
                encoder.header_table_size = step["tableSize"]
            continue
        fields = [(n.encode("latin1"), v.encode("latin1")) for n, v in step["fields"]]
        blocks.append(encoder.encode(fields, huffman=step.get("huffman", True)).hex())
    return {"blocks": blocks}


for line in sys.stdin:
    req = json.loads(line)
    try:
        answer = decode(req) if req["op"] == "decode" else encode(req)
    except Exception as err:  # a decoding error is an answer, not a crash of the peer
        answer = {"error": f"{type(err).__name__}: {err}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()

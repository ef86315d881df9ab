package main

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec replaces the proto codec on both sides: a message is its encoded bytes. Marshal
// sends a prebuilt buffer without copying; Unmarshal only counts unless asked to keep.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

// rawMsg is what every handler and client sends and receives.
type rawMsg struct {
	b    []byte // encoded message to send, or the received one when keep is set
	n    int    // received length
	keep bool
}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := v.(*rawMsg)
	m.n = data.Len()
	if m.keep {
		m.b = data.Materialize()
	}
	return nil
}

// payload encodes fngate.bench.Payload{data: n bytes}.
func payload(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, data)
}

// int64Fields decodes the varint fields of a message (DownloadRequest, Summary) by number.
func int64Fields(b []byte) map[protowire.Number]int64 {
	out := map[protowire.Number]int64{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return out
			}
			out[num] = int64(v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return out
		}
		b = b[m:]
	}
	return out
}

// int64Message encodes varint fields 1, 2, ... (DownloadRequest, Summary).
func int64Message(values ...int64) []byte {
	var b []byte
	for i, v := range values {
		b = protowire.AppendTag(b, protowire.Number(i+1), protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

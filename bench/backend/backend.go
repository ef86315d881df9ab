package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const serviceName = "fngate.bench.Bench"

var unaryReply *rawMsg

func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "h2c listen address (loopback)")
	size := fs.Int("payload", 32, "bytes of data in the unary reply")
	fs.Parse(args)
	unaryReply = &rawMsg{b: payload(*size)}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(64<<20),
		grpc.MaxSendMsgSize(64<<20),
		// Large fixed windows: the backend must never be what limits a stream.
		grpc.InitialWindowSize(8<<20),
		grpc.InitialConnWindowSize(32<<20),
	)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unaryHandler}},
		Streams: []grpc.StreamDesc{
			{StreamName: "Upload", Handler: uploadHandler, ClientStreams: true},
			{StreamName: "Download", Handler: downloadHandler, ServerStreams: true},
		},
		Metadata: "bench.proto",
	}, struct{}{})

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	printJSON(map[string]any{"msg": "backend listening", "address": lis.Addr().String(), "pid": os.Getpid()})
	return srv.Serve(lis)
}

func unaryHandler(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in rawMsg
	if err := dec(&in); err != nil {
		return nil, err
	}
	return unaryReply, nil
}

func uploadHandler(_ any, stream grpc.ServerStream) error {
	var in rawMsg
	var total, msgs int64
	for {
		err := stream.RecvMsg(&in)
		if err == io.EOF {
			return stream.SendMsg(&rawMsg{b: int64Message(total, msgs)})
		}
		if err != nil {
			return err
		}
		total += int64(in.n)
		msgs++
	}
}

func downloadHandler(_ any, stream grpc.ServerStream) error {
	in := rawMsg{keep: true}
	if err := stream.RecvMsg(&in); err != nil {
		return err
	}
	f := int64Fields(in.b)
	total, chunk := f[1], f[2]
	if chunk <= 0 || chunk > 16<<20 || total < 0 {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("bad DownloadRequest bytes=%d chunk=%d", total, chunk))
	}
	// `chunk` bytes of data per message; the count is of encoded message bytes.
	msg := &rawMsg{b: payload(int(chunk))}
	for sent := int64(0); sent < total; sent += int64(len(msg.b)) {
		if err := stream.SendMsg(msg); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const (
	unaryMethod    = "/" + serviceName + "/Unary"
	uploadMethod   = "/" + serviceName + "/Upload"
	downloadMethod = "/" + serviceName + "/Download"
)

type clientFlags struct {
	target  *string
	headers headerFlags
	timeout *time.Duration
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	c := &clientFlags{
		target:  fs.String("target", "", "host:port (h2c)"),
		timeout: fs.Duration("timeout", 60*time.Second, "give up after this long"),
	}
	fs.Var(&c.headers, "H", `request metadata "name: value" (repeatable)`)
	return c
}

func (c *clientFlags) dial() (*grpc.ClientConn, error) {
	if *c.target == "" {
		return nil, fmt.Errorf("-target is required")
	}
	return grpc.NewClient("passthrough:///"+*c.target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		// Fixed large windows: the client must never be what limits a stream.
		grpc.WithInitialWindowSize(8<<20),
		grpc.WithInitialConnWindowSize(32<<20),
		grpc.WithReadBufferSize(256<<10),
		grpc.WithWriteBufferSize(256<<10),
	)
}

func (c *clientFlags) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), *c.timeout)
	for _, h := range c.headers {
		ctx = metadata.AppendToOutgoingContext(ctx, h[0], h[1])
	}
	return ctx, cancel
}

// connect parses args into fs (which holds c's flags), dials the target and makes the call
// context; done cancels the context, then closes the connection.
func (c *clientFlags) connect(fs *flag.FlagSet, args []string) (conn *grpc.ClientConn, ctx context.Context, done func(), err error) {
	fs.Parse(args)
	conn, err = c.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := c.context()
	return conn, ctx, func() {
		cancel()
		conn.Close()
	}, nil
}

// runCheck: one unary RPC, a short client stream and a short server stream, each verified.
// Prints the unary call's response metadata, so the harness can see the proxy was in the path.
func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	c := addClientFlags(fs)
	conn, ctx, done, err := c.connect(fs, args)
	if err != nil {
		return err
	}
	defer done()

	var header metadata.MD
	out := rawMsg{keep: true}
	if err := conn.Invoke(ctx, unaryMethod, &rawMsg{b: payload(32)}, &out, grpc.Header(&header)); err != nil {
		return fmt.Errorf("unary: %w", err)
	}
	if out.n == 0 {
		return fmt.Errorf("unary: empty reply")
	}
	up, err := upload(ctx, conn, 256<<10, 16<<10)
	if err != nil {
		return err
	}
	down, err := download(ctx, conn, 256<<10, 16<<10)
	if err != nil {
		return err
	}
	printJSON(map[string]any{"ok": true, "unaryReplyBytes": out.n, "uploaded": up, "downloaded": down, "header": header})
	return nil
}

// runStream times one client stream (upload) or server stream (download) of -bytes, on a
// connection already warmed by a unary call (so the figure is the stream, not the dial).
func runStream(args []string) error {
	fs := flag.NewFlagSet("stream", flag.ExitOnError)
	c := addClientFlags(fs)
	mode := fs.String("mode", "upload", "upload (client stream) or download (server stream)")
	total := fs.Int64("bytes", 1<<30, "bytes to move")
	chunk := fs.Int("chunk", 64<<10, "bytes of data per message")
	conn, ctx, done, err := c.connect(fs, args)
	if err != nil {
		return err
	}
	defer done()
	if err := conn.Invoke(ctx, unaryMethod, &rawMsg{b: payload(32)}, &rawMsg{}); err != nil {
		return fmt.Errorf("warm-up unary: %w", err)
	}
	start := time.Now()
	var moved int64
	switch *mode {
	case "upload":
		moved, err = upload(ctx, conn, *total, *chunk)
	case "download":
		moved, err = download(ctx, conn, *total, *chunk)
	default:
		return fmt.Errorf("-mode %q: want upload or download", *mode)
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	printJSON(map[string]any{"mode": *mode, "bytes": moved, "seconds": secs, "mbps": float64(moved) / secs / 1e6})
	return nil
}

func upload(ctx context.Context, conn *grpc.ClientConn, total int64, chunk int) (int64, error) {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, uploadMethod)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	msg := &rawMsg{b: payload(chunk)}
	var sent int64
	for sent < total {
		if err := s.SendMsg(msg); err != nil {
			break // the status comes from RecvMsg
		}
		sent += int64(len(msg.b))
	}
	if err := s.CloseSend(); err != nil {
		return 0, fmt.Errorf("upload: close send: %w", err)
	}
	reply := rawMsg{keep: true}
	if err := s.RecvMsg(&reply); err != nil {
		return 0, fmt.Errorf("upload: after %d bytes: %w", sent, err)
	}
	if got := int64Fields(reply.b)[1]; got != sent {
		return 0, fmt.Errorf("upload: sent %d bytes, backend counted %d", sent, got)
	}
	return sent, nil
}

func download(ctx context.Context, conn *grpc.ClientConn, total int64, chunk int) (int64, error) {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, downloadMethod)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	if err := s.SendMsg(&rawMsg{b: int64Message(total, int64(chunk))}); err != nil {
		return 0, fmt.Errorf("download: request: %w", err)
	}
	if err := s.CloseSend(); err != nil {
		return 0, fmt.Errorf("download: close send: %w", err)
	}
	var got int64
	var in rawMsg
	for {
		err := s.RecvMsg(&in)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("download: after %d bytes: %w", got, err)
		}
		got += int64(in.n)
	}
	if got < total {
		return 0, fmt.Errorf("download: stream ended OK after %d of %d bytes", got, total)
	}
	return got, nil
}

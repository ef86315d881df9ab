package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// handshake writes the client preface and an empty SETTINGS, then reads until it has both
// the server's SETTINGS (which it acknowledges) and the ACK of its own: a complete HTTP/2
// connection setup, whatever else the server sends in between (WINDOW_UPDATE, ...).
func handshake(conn net.Conn, fr *http2.Framer, bw *bufio.Writer) error {
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return err
	}
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var theirs, acked bool
	for !theirs || !acked {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				acked = true
				continue
			}
			theirs = true
			if err := fr.WriteSettingsAck(); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY (%v) during setup", f.ErrCode)
		}
	}
	return nil
}

type h2conn struct {
	conn net.Conn
	fr   *http2.Framer
	bw   *bufio.Writer
}

func dialH2(target string, timeout time.Duration) (*h2conn, error) {
	conn, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	bw := bufio.NewWriterSize(conn, 4096)
	fr := http2.NewFramer(bw, bufio.NewReaderSize(conn, 4096))
	if err := handshake(conn, fr, bw); err != nil {
		conn.Close()
		return nil, err
	}
	return &h2conn{conn: conn, fr: fr, bw: bw}, nil
}

// runIdle opens -n HTTP/2 connections and holds them, answering PINGs, until SIGTERM, stdin
// closing or -hold. It prints one line when all are open and one (the drops) at the end.
func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	target := fs.String("target", "", "host:port (h2c)")
	n := fs.Int("n", 10000, "connections")
	parallel := fs.Int("parallel", 64, "connections being set up at once")
	setup := fs.Duration("setup-timeout", 10*time.Second, "per connection")
	hold := fs.Duration("hold", 5*time.Minute, "release everything after this long in any case")
	fs.Parse(args)

	var mu sync.Mutex
	var conns []*h2conn
	var failed int
	var firstErr error
	var dropped atomic.Int64
	var releasing atomic.Bool
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialH2(*target, *setup)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			c.conn.SetDeadline(time.Time{})
			conns = append(conns, c)
			go idleReader(c, &dropped, &releasing)
		}()
	}
	wg.Wait()
	info := map[string]any{"msg": "idle connections open", "opened": len(conns), "failed": failed, "seconds": time.Since(start).Seconds()}
	if firstErr != nil {
		info["firstError"] = firstErr.Error()
	}
	printJSON(info)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	stdin := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdin)
	}()
	select {
	case <-sig:
	case <-stdin:
	case <-time.After(*hold):
	}
	releasing.Store(true)
	printJSON(map[string]any{"msg": "released", "droppedByServer": dropped.Load()})
	for _, c := range conns {
		c.conn.Close()
	}
	return nil
}

func idleReader(c *h2conn, dropped *atomic.Int64, releasing *atomic.Bool) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !releasing.Load() {
				dropped.Add(1)
			}
			return
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
				c.bw.Flush()
			}
		case *http2.GoAwayFrame:
			if !releasing.Load() {
				dropped.Add(1)
			}
			c.conn.Close()
			return
		}
	}
}

// runConnRate: -c workers, each in a loop for -duration: dial, HTTP/2 setup, one unary RPC
// (verified: :status 200, grpc-status 0), close. The rate is completed loops per second.
func runConnRate(args []string) error {
	fs := flag.NewFlagSet("connrate", flag.ExitOnError)
	target := fs.String("target", "", "host:port (h2c)")
	workers := fs.Int("c", 8, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "how long to loop")
	timeout := fs.Duration("timeout", 5*time.Second, "per connection")
	var headers headerFlags
	fs.Var(&headers, "H", `request metadata "name: value" (repeatable)`)
	fs.Parse(args)
	if *target == "" {
		return errors.New("-target is required")
	}
	body := grpcFrame(payload(32))

	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	end := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hbuf bytes.Buffer
			for time.Now().Before(end) {
				if err := oneConnRPC(*target, *timeout, headers, body, &hbuf); err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	out := map[string]any{"connections": ok.Load(), "failed": failed.Load(), "seconds": secs, "rate": float64(ok.Load()) / secs}
	if firstErr != nil {
		out["firstError"] = firstErr.Error()
	}
	printJSON(out)
	return nil
}

func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func oneConnRPC(target string, timeout time.Duration, headers headerFlags, body []byte, hbuf *bytes.Buffer) error {
	c, err := dialH2(target, timeout)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hbuf.Reset()
	enc := hpack.NewEncoder(hbuf)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", unaryMethod}, {":authority", target},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for _, h := range headers {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	if err := c.fr.WriteData(1, true, body); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	gotHeaders := false
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			if !gotHeaders {
				gotHeaders = true
				if s := f.PseudoValue("status"); s != "200" {
					return fmt.Errorf(":status %s", s)
				}
			}
			if f.StreamEnded() {
				if s := field(f, "grpc-status"); s != "0" {
					return fmt.Errorf("grpc-status %q (%s)", s, field(f, "grpc-message"))
				}
				return nil
			}
		case *http2.RSTStreamFrame:
			return fmt.Errorf("RST_STREAM %v", f.ErrCode)
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo || f.LastStreamID < 1 {
				return fmt.Errorf("GOAWAY %v last stream %d", f.ErrCode, f.LastStreamID)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
				c.bw.Flush()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
				c.bw.Flush()
			}
		}
	}
}

func field(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

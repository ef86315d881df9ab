// fngate-benchkit: the benchmark's native pieces, in one static binary.
//
//	backend   the h2c gRPC backend every proxy forwards to (grpc-go, raw codec: it never
//	          decodes a payload, so it is not the bottleneck)
//	check     one unary RPC and one short stream of each kind through a target, verified
//	stream    a 1 GiB (or -bytes) client stream or server stream, timed
//	idle      N idle HTTP/2 connections (preface + SETTINGS exchanged), held until SIGTERM
//	connrate  new connection + first RPC, in a loop, for -duration
//
// Every command prints its result as one JSON line on stdout; errors go to stderr with a
// non-zero exit. Every client command has a deadline of its own (-timeout).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "backend":
		err = runBackend(args)
	case "check":
		err = runCheck(args)
	case "stream":
		err = runStream(args)
	case "idle":
		err = runIdle(args)
	case "connrate":
		err = runConnRate(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fngate-benchkit %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: fngate-benchkit backend|check|stream|idle|connrate [flags] (-h for flags)")
	os.Exit(2)
}

// printJSON writes one result line.
func printJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// headerFlags collects repeated -H "name: value" flags.
type headerFlags [][2]string

func (h *headerFlags) String() string { return fmt.Sprint(*h) }

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("header %q: want name: value", s)
	}
	*h = append(*h, [2]string{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)})
	return nil
}

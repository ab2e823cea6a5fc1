package network

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/probes/record"
)

func TestClientServerLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var srvOut bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr, record.NewWriter(&srvOut, "net")) }()
	var out bytes.Buffer
	ok, m := Client(context.Background(), ClientConfig{
		Target: addr, Source: "net:test", Duration: 400 * time.Millisecond, Streams: 2, Parallel: 2,
		Warmup: 2 * time.Second, Out: record.NewWriter(&out, "net"),
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !ok || m["conns_ok"] == 0 || m["stream_bytes"] == 0 {
		t.Fatalf("ok=%v metrics=%v\n%s", ok, m, out.String())
	}
}

func TestClientCountsRefusals(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out bytes.Buffer
	ok, m := Client(context.Background(), ClientConfig{Target: addr, Source: "net:test", Count: 3, Out: record.NewWriter(&out, "net")})
	if ok || m["refused"] < 3 || m["conn_errors"] < 3 {
		t.Fatalf("ok=%v metrics=%v", ok, m)
	}
	recs, _, err := record.ReadRecords(&out)
	if err != nil || len(recs) == 0 {
		t.Fatalf("records: %v", err)
	}
}

func TestClientDNSFailure(t *testing.T) {
	var out bytes.Buffer
	ok, m := Client(context.Background(), ClientConfig{Target: "no-such-host.invalid:7000", Source: "net:test", Count: 1, Out: record.NewWriter(&out, "net")})
	if ok || m["dns_failures"] < 1 {
		t.Fatalf("ok=%v metrics=%v", ok, m)
	}
}

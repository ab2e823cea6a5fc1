// Package network is the net probe's workload: a TCP server and a client
// that run in probe containers. The client drives long TCP streams (bytes
// counted on both ends, so a short or padded stream is a mismatch) and many
// short echo connections (a nonce must come back intact), resolving the
// server by name on every connection so Docker's embedded DNS is exercised.
// It reports throughput, connect latency percentiles, connection errors,
// resets, refusals, timeouts and DNS failures.
//
// Protocol: the client's first byte selects the mode.
//
//	'S' stream: the client sends bytes until it half-closes; the server
//	    replies with the count it received as 8 bytes, big endian.
//	'E' echo:   the client sends 32 bytes; the server sends them back.
package network

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/matrixctl/matrixctl/probes/record"
	"github.com/matrixctl/matrixctl/probes/stats"
)

const (
	modeStream = 'S'
	modeEcho   = 'E'
	nonceLen   = 32
	ioTimeout  = 10 * time.Second
)

// Serve accepts connections on addr until ctx is done.
func Serve(ctx context.Context, addr string, out *record.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	out.Info("net-server", "listening on %s", ln.Addr())
	var conns, errs atomic.Int64
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				out.Metric("net-server", map[string]float64{"conns": float64(conns.Load()), "errors": float64(errs.Load())})
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		conns.Add(1)
		go func() {
			if err := handle(c); err != nil {
				errs.Add(1)
			}
		}()
	}
}

func handle(c net.Conn) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return err
	}
	switch mode[0] {
	case modeStream:
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return err
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		_, err = c.Write(b[:])
		return err
	case modeEcho:
		var b [nonceLen]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		_, err := c.Write(b[:])
		return err
	}
	return fmt.Errorf("unknown mode %q", mode[0])
}

// ClientConfig is one client run.
type ClientConfig struct {
	// Target is host:port; host may be a name resolved through DNS.
	Target string
	// Source labels the records, e.g. "net:bridge".
	Source   string
	Duration time.Duration
	// Streams is the number of parallel streams (0 skips the stream phase).
	Streams int
	// Parallel is the number of concurrent short-connection workers.
	Parallel int
	// Count, when > 0, makes exactly Count short connections instead of running for a duration.
	Count int
	// Warmup is how long to wait for the server to accept a first connection.
	Warmup time.Duration
	Out    *record.Writer
}

type counters struct {
	ok, connErrors, resets, refused, dns, timeouts, mismatches, other atomic.Int64
	streamBytes                                                       atomic.Int64
	logged                                                            atomic.Int64
}

// Client runs the streams and short connections and writes a metric record.
// ok is false when any connection failed or returned wrong data.
func Client(ctx context.Context, cfg ClientConfig) (bool, map[string]float64) {
	cfg.Parallel = max(cfg.Parallel, 1)
	c := &counters{}
	var lat stats.Latencies
	m := map[string]float64{}
	if err := warmup(ctx, cfg.Target, cfg.Warmup); err != nil {
		c.classify(cfg, "warmup", err)
	}
	start := time.Now()
	if cfg.Streams > 0 && cfg.Count == 0 {
		d := cfg.Duration / 2
		var wg sync.WaitGroup
		for i := 0; i < cfg.Streams; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stream(ctx, cfg.Target, d, c); err != nil {
					c.classify(cfg, "stream", err)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start).Seconds()
		m["stream_bytes"] = float64(c.streamBytes.Load())
		m["stream_mb_per_s"] = float64(c.streamBytes.Load()) / el / 1e6
	}
	shortStart := time.Now()
	deadline := shortStart.Add(cfg.Duration - time.Since(start))
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < cfg.Parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if cfg.Count > 0 {
					if next.Add(1) > int64(cfg.Count) {
						return
					}
				} else if !time.Now().Before(deadline) {
					return
				}
				t := time.Now()
				err := echo(ctx, cfg.Target)
				if err != nil {
					c.classify(cfg, "echo", err)
					continue
				}
				lat.Add(time.Since(t))
				c.ok.Add(1)
			}
		}()
	}
	wg.Wait()
	m["conns_ok"] = float64(c.ok.Load())
	m["conn_errors"] = float64(c.connErrors.Load())
	m["resets"] = float64(c.resets.Load())
	m["refused"] = float64(c.refused.Load())
	m["dns_failures"] = float64(c.dns.Load())
	m["timeouts"] = float64(c.timeouts.Load())
	m["data_mismatches"] = float64(c.mismatches.Load())
	if el := time.Since(shortStart).Seconds(); el > 0 {
		m["short_conns_per_s"] = float64(c.ok.Load()) / el
	}
	lat.Into(m, "echo_latency")
	cfg.Out.Metric(cfg.Source, m)
	return c.connErrors.Load() == 0 && c.mismatches.Load() == 0, m
}

var errMismatch = errors.New("data mismatch")

// classify counts err under its kind and records the first few.
func (c *counters) classify(cfg ClientConfig, op string, err error) {
	var dnsErr *net.DNSError
	var ne net.Error
	kind := "other"
	switch {
	case errors.Is(err, errMismatch):
		c.mismatches.Add(1)
		kind = "mismatch"
	case errors.As(err, &dnsErr):
		c.dns.Add(1)
		kind = "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		c.refused.Add(1)
		kind = "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		c.resets.Add(1)
		kind = "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		c.timeouts.Add(1)
		kind = "timeout"
	default:
		c.other.Add(1)
	}
	if kind != "mismatch" {
		c.connErrors.Add(1)
	}
	if c.logged.Add(1) <= 20 {
		cfg.Out.Error(cfg.Source, "%s %s (%s): %v", op, cfg.Target, kind, err)
	}
}

func warmup(ctx context.Context, target string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := echo(ctx, target)
		if err == nil || !time.Now().Before(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dial(ctx context.Context, target string) (net.Conn, error) {
	d := net.Dialer{Timeout: ioTimeout}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c, nil
}

func echo(ctx context.Context, target string) error {
	c, err := dial(ctx, target)
	if err != nil {
		return err
	}
	defer c.Close()
	var b [1 + nonceLen]byte
	b[0] = modeEcho
	rand.Read(b[1:])
	if _, err := c.Write(b[:]); err != nil {
		return err
	}
	var got [nonceLen]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if got != [nonceLen]byte(b[1:]) {
		return fmt.Errorf("echo: %w", errMismatch)
	}
	return nil
}

func stream(ctx context.Context, target string, d time.Duration, cnt *counters) error {
	c, err := dial(ctx, target)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	buf[0] = modeStream
	first := true
	var sent int64
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		c.SetDeadline(time.Now().Add(ioTimeout))
		n, err := c.Write(buf)
		if first && n > 0 {
			n--
			first = false
		}
		sent += int64(n)
		cnt.streamBytes.Add(int64(n))
		if err != nil {
			return err
		}
		buf[0] = 0
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if got := int64(binary.BigEndian.Uint64(b[:])); got != sent {
		return fmt.Errorf("stream: server received %d bytes, client sent %d: %w", got, sent, errMismatch)
	}
	return nil
}

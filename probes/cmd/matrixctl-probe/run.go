package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/probes/iowork"
	"github.com/matrixctl/matrixctl/probes/network"
	"github.com/matrixctl/matrixctl/probes/record"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
	exitError  = 3
)

type command struct {
	name string
	help string
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"io", "run the IO workload and verify it", runIO},
		{"verify", "verify the state journal's promises (after a power cut)", runVerify},
		{"net-server", "serve the net probe protocol", runNetServer},
		{"net-client", "run net probe streams and short connections", runNetClient},
		{"sleep", "sleep until killed or -for elapses (keeps a container alive for exec)", runSleep},
		{"true", "exit 0 (exec latency)", func(context.Context, []string, io.Writer, io.Writer) int { return exitOK }},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "matrixctl-probe: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: matrixctl-probe <command> [flags]")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.help)
	}
}

// syncTee writes to stdout and to a record file, syncing the file.
type syncTee struct {
	out  io.Writer
	file *os.File
}

func (t syncTee) Write(b []byte) (int, error) {
	if _, err := t.file.Write(b); err != nil {
		return 0, err
	}
	return t.out.Write(b)
}

func (t syncTee) Sync() error { return t.file.Sync() }

// recordWriter returns the record writer for probe; closeFn closes the file.
func recordWriter(probe, path string, stdout io.Writer) (*record.Writer, func(), error) {
	if path == "" {
		return record.NewWriter(stdout, probe), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return record.NewWriter(syncTee{out: stdout, file: f}, probe), func() { f.Close() }, nil
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runIO(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("io", stderr)
	dirs := fs.String("dirs", "/data/layer,/data/vol/io", "comma-separated workload directories")
	lower := fs.String("lower", iowork.LowerDir, "lower-layer files to copy up and white out (empty: skip)")
	journal := fs.String("journal", "/data/vol/journal.jsonl", "state journal path")
	records := fs.String("records", "", "also append records to this file")
	duration := fs.Duration("duration", 5*time.Second, "how long to run")
	intensity := fs.Int("intensity", 1, "scale of sizes and counts (1-10)")
	seed := fs.Uint64("seed", 1, "payload seed")
	verifyExisting := fs.Bool("verify-existing", false, "if the journal already exists (a restart after a crash), verify its promises instead of writing")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if st, err := os.Stat(*journal); *verifyExisting && err == nil && st.Size() > 0 {
		out, closeFn, err := recordWriter("io", *records, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "io: %v\n", err)
			return exitError
		}
		defer closeFn()
		ok, err := iowork.Verify(iowork.VerifyConfig{Journal: *journal, Out: out})
		return exitCode(ok, err, stderr)
	}
	if *intensity < 1 || *intensity > 10 {
		fmt.Fprintf(stderr, "io: -intensity %d: want 1-10\n", *intensity)
		return exitUsage
	}
	out, closeFn, err := recordWriter("io", *records, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "io: %v\n", err)
		return exitError
	}
	defer closeFn()
	ok, err := iowork.Run(ctx, iowork.Config{
		Dirs: strings.Split(*dirs, ","), Lower: *lower, Journal: *journal,
		Duration: *duration, Intensity: *intensity, Seed: *seed, Out: out,
	})
	return exitCode(ok, err, stderr)
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("verify", stderr)
	journal := fs.String("journal", "/data/vol/journal.jsonl", "state journal path")
	prefix := fs.String("prefix", "", "verify only paths under this prefix")
	records := fs.String("records", "", "also append records to this file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	out, closeFn, err := recordWriter("io", *records, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return exitError
	}
	defer closeFn()
	ok, err := iowork.Verify(iowork.VerifyConfig{Journal: *journal, Prefix: *prefix, Out: out})
	return exitCode(ok, err, stderr)
}

func exitCode(ok bool, err error, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintf(stderr, "matrixctl-probe: %v\n", err)
	}
	switch {
	case !ok && err == nil:
		return exitFailed
	case err != nil:
		return exitError
	}
	return exitOK
}

func runNetServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("net-server", stderr)
	listen := fs.String("listen", ":7000", "listen address")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := network.Serve(ctx, *listen, record.NewWriter(stdout, "net")); err != nil {
		fmt.Fprintf(stderr, "net-server: %v\n", err)
		return exitError
	}
	return exitOK
}

func runNetClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("net-client", stderr)
	target := fs.String("target", "", "server host:port")
	source := fs.String("source", "net", "record source label")
	duration := fs.Duration("duration", 5*time.Second, "how long to run")
	streams := fs.Int("streams", 2, "parallel streams (0: none)")
	parallel := fs.Int("parallel", 4, "concurrent short-connection workers")
	count := fs.Int("count", 0, "make exactly this many short connections (0: run for -duration)")
	warm := fs.Duration("warmup", 10*time.Second, "wait this long for the server to answer first")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *target == "" {
		fmt.Fprintln(stderr, "net-client: -target is required")
		return exitUsage
	}
	out := record.NewWriter(stdout, "net")
	ok, m := network.Client(ctx, network.ClientConfig{
		Target: *target, Source: *source, Duration: *duration, Streams: *streams,
		Parallel: *parallel, Count: *count, Warmup: *warm, Out: out,
	})
	out.Write(record.Record{Kind: record.KindSummary, Source: *source, OK: &ok, Metrics: m})
	if !ok {
		return exitFailed
	}
	return exitOK
}

func runSleep(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlags("sleep", stderr)
	d := fs.Duration("for", time.Hour, "maximum sleep")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	select {
	case <-ctx.Done():
	case <-time.After(*d):
	}
	return exitOK
}

// Command matrixctl-probe is the static probe binary that runs inside probe
// containers (FROM scratch). It is thin: the workloads live in
// probes/iowork and probes/network. Records (probes/record) go to stdout,
// and with -records also to a file, fsynced after each record.
//
// Exit codes: 0 pass, 1 integrity or probe failure, 2 usage, 3 operational error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// run executes matrixctl with args and returns its exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "matrixctl ") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	code, _, errOut := run(t, "version", "--no-such-flag")
	if code != ExitUsage || !strings.Contains(errOut, "no-such-flag") {
		t.Fatalf("got code %d, stderr %q; want %d naming the flag", code, errOut, ExitUsage)
	}
}

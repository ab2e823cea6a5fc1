package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/probes/record"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"io", "-intensity", "0"}, {"net-client"}, {"io", "-bogus"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errb.String())
		}
	}
}

func TestIOThenVerifyExisting(t *testing.T) {
	dir := t.TempDir()
	j := filepath.Join(dir, "j.jsonl")
	recs := filepath.Join(dir, "r.jsonl")
	args := []string{"io", "-dirs", filepath.Join(dir, "a"), "-lower", "", "-journal", j, "-records", recs, "-duration", "10ms", "-verify-existing"}
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != exitOK {
		t.Fatalf("io exit %d: %s", code, errb.String())
	}
	// a second start finds the journal and verifies instead of writing
	out.Reset()
	if code := run(context.Background(), args, &out, &errb); code != exitOK {
		t.Fatalf("verify-existing exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "post-crash verification") {
		t.Fatalf("second start did not verify:\n%s", out.String())
	}
	got, torn, err := record.ReadFile(recs)
	if err != nil || torn || len(got) < 2 {
		t.Fatalf("records file: %d records, torn=%v, err=%v", len(got), torn, err)
	}
}

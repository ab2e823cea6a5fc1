package qemu

import (
	"slices"
	"testing"
)

// TestParseHostIOError reads the replies QEMU 7.2 gives for a guest paused
// on ENOSPC (taken from a real QEMU, see TestIntegrationHostDiskFull).
func TestParseHostIOError(t *testing.T) {
	st, err := parseStatus([]byte(`{"return": {"status": "io-error", "singlestep": false, "running": false}}`))
	if err != nil || st != "io-error" {
		t.Fatalf("parseStatus = %q, %v", st, err)
	}
	devs, err := parseIOStatus([]byte(`{"return": [{"io-status": "ok", "device": "root", "locked": false},
		{"io-status": "nospace", "device": "", "qdev": "scratch", "locked": false}]}`))
	want := []string{"scratch: nospace (the host filesystem holding its image is full)"}
	if err != nil || !slices.Equal(devs, want) {
		t.Fatalf("parseIOStatus = %q, %v; want %q", devs, err, want)
	}
	for _, bad := range []string{``, `{}`, `{"return": 3}`, `{"return": null}`, `[`} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
		if _, err := parseIOStatus([]byte(bad)); err == nil {
			t.Errorf("parseIOStatus(%q): no error", bad)
		}
	}
}

// FuzzParseIOStatus: QMP replies are outside input; no reply may panic.
func FuzzParseIOStatus(f *testing.F) {
	f.Add([]byte(`{"return": [{"io-status": "nospace", "device": "", "qdev": "scratch"}]}`))
	f.Add([]byte(`{"return": {"status": "io-error"}}`))
	f.Add([]byte(`{"error": {"class": "GenericError", "desc": "x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStatus(b)
		devs, err := parseIOStatus(b)
		if err != nil && devs != nil {
			t.Fatalf("devices %q with error %v", devs, err)
		}
	})
}

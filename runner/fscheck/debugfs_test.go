package fscheck

import "testing"

func TestParseBmap(t *testing.T) {
	if n, err := ParseBmap([]byte("33282\n")); err != nil || n != 33282 {
		t.Errorf("ParseBmap = %d, %v", n, err)
	}
	for _, bad := range []string{"", "0\n", "-3", "12 13", "bmap: File not found"} {
		if _, err := ParseBmap([]byte(bad)); err == nil {
			t.Errorf("ParseBmap(%q): no error", bad)
		}
	}
}

// FuzzParseBmap: debugfs output is outside input.
func FuzzParseBmap(f *testing.F) {
	f.Add([]byte("33282\n"))
	f.Add([]byte("0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := ParseBmap(b); err == nil && n <= 0 {
			t.Fatalf("accepted block %d", n)
		}
	})
}

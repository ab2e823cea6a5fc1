package console

import (
	"bytes"
	"testing"
)

// corpusBytes concatenates the raw logs of one group (or of all but one when exclude is set).
func corpusBytes(b *testing.B, group string, exclude bool) []byte {
	b.Helper()
	var buf bytes.Buffer
	for _, cf := range loadCorpus(b) {
		if (cf.group == group) != exclude {
			buf.Write(cf.raw)
		}
	}
	return buf.Bytes()
}

func benchScan(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s := NewScanner(Options{})
		for i := 0; i < len(data); i += 32 << 10 {
			_, _ = s.Write(data[i:min(len(data), i+32<<10)])
		}
		s.Close()
	}
}

// BenchmarkScanClean measures throughput on a large clean log (about 32 MiB)
// built from the clean corpus: boots, dockerd's and docker's own lines.
func BenchmarkScanClean(b *testing.B) {
	unit := corpusBytes(b, "clean", false)
	data := bytes.Repeat(unit, (32<<20)/len(unit)+1)
	benchScan(b, data)
}

// BenchmarkScanCrash measures throughput on the crash corpus (every report kind).
func BenchmarkScanCrash(b *testing.B) {
	unit := corpusBytes(b, "clean", true)
	data := bytes.Repeat(unit, (4<<20)/len(unit)+1)
	benchScan(b, data)
}

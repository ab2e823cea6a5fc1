package block

import (
	"encoding/binary"
	"testing"
)

func fill(h Header) []byte {
	b := make([]byte, Size)
	Fill(b, h)
	return b
}

func TestRoundTrip(t *testing.T) {
	h := Header{FileID: 7, Offset: 3 * Size, Generation: 2, Seed: 99}
	b := fill(h)
	if k, got := Check(b, h); k != OK || got != h {
		t.Fatalf("Check = %q, %+v; want OK, %+v", k, got, h)
	}
	if Parse(b) != h {
		t.Fatalf("Parse = %+v", Parse(b))
	}
	if string(fill(h)) != string(b) {
		t.Fatal("Fill is not deterministic")
	}
}

func TestDetectsEveryCorruptionKind(t *testing.T) {
	want := Header{FileID: 7, Offset: 3 * Size, Generation: 2, Seed: 99}
	tests := []struct {
		name string
		b    func() []byte
		kind Kind
	}{
		{"zeroed", func() []byte { return make([]byte, Size) }, Zero},
		{"short", func() []byte { return fill(want)[:Size-1] }, Short},
		{"foreign data", func() []byte { b := fill(want); b[0] ^= 1; return b }, BadMagic},
		{"bit flip in payload", func() []byte { b := fill(want); b[Size-1] ^= 0x80; return b }, Checksum},
		{"bit flip in header", func() []byte { b := fill(want); b[20] ^= 1; return b }, Checksum},
		{"torn write (half old, half new)", func() []byte {
			b := fill(want)
			old := fill(Header{FileID: 7, Offset: 3 * Size, Generation: 1, Seed: 99})
			copy(b[Size/2:], old[Size/2:])
			return b
		}, Checksum},
		{"other file", func() []byte { return fill(Header{FileID: 8, Offset: 3 * Size, Generation: 2, Seed: 99}) }, WrongFile},
		{"other offset", func() []byte { return fill(Header{FileID: 7, Offset: 4 * Size, Generation: 2, Seed: 99}) }, WrongOffset},
		{"lost overwrite", func() []byte { return fill(Header{FileID: 7, Offset: 3 * Size, Generation: 1, Seed: 99}) }, StaleGeneration},
		{"newer than expected", func() []byte { return fill(Header{FileID: 7, Offset: 3 * Size, Generation: 3, Seed: 99}) }, FutureGeneration},
		{"other run", func() []byte { return fill(Header{FileID: 7, Offset: 3 * Size, Generation: 2, Seed: 100}) }, Payload},
		{"forged payload with valid crc", func() []byte {
			b := fill(want)
			b[100] ^= 1
			binary.LittleEndian.PutUint32(b[4:], 0)
			binary.LittleEndian.PutUint32(b[4:], crcOf(b))
			return b
		}, Payload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, got := Check(tt.b(), want)
			if k != tt.kind {
				t.Fatalf("Check = %q, want %q", k, tt.kind)
			}
			if Describe(k, got) == "" {
				t.Error("empty description")
			}
		})
	}
}

func crcOf(b []byte) uint32 {
	c := make([]byte, Size)
	copy(c, b)
	binary.LittleEndian.PutUint32(c[4:], 0)
	return crc32c(c)
}

func BenchmarkFill(b *testing.B) {
	buf := make([]byte, Size)
	b.SetBytes(Size)
	for i := 0; i < b.N; i++ {
		Fill(buf, Header{FileID: 1, Offset: uint64(i) * Size})
	}
}

package images

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkVerifyEntry1GiB measures reusing an entry that holds a 1 GiB
// image: sizes plus the sha256 of every file (page cache warm).
func BenchmarkVerifyEntry1GiB(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "rootfs.ext4"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for range 1024 {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	if err := writeManifest(dir, &manifest{Kind: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1 << 30)
	b.ResetTimer()
	for b.Loop() {
		if err := VerifyEntry(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEntrySizesOnly is the check every reuse does after the
// first one in a Cache.
func BenchmarkVerifyEntrySizesOnly(b *testing.B) {
	dir := b.TempDir()
	for i := range 4000 {
		if err := os.WriteFile(filepath.Join(dir, "m"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := writeManifest(dir, &manifest{Kind: "bench"}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := verifyEntry(dir, false); err != nil {
			b.Fatal(err)
		}
	}
}

package console

import (
	"bytes"
	"testing"
)

// checkLiterals compares one pass of the automaton with bytes.Index per key.
func checkLiterals(t *testing.T, ls *literalSet, line []byte) {
	t.Helper()
	var found keySet
	first := make([]int, len(ls.keys))
	ls.find(line, &found, first)
	for k, key := range ls.keys {
		want := bytes.Index(line, key)
		if found.has(k) != (want >= 0) || want >= 0 && first[k] != want {
			t.Fatalf("key %q in %q: found=%v at %d, bytes.Index says %d", key, line, found.has(k), first[k], want)
		}
	}
}

func TestLiteralSetAgreesWithIndex(t *testing.T) {
	ls := compiled().lits
	for _, cf := range loadCorpus(t) {
		for _, l := range bytes.Split(cf.raw, []byte("\n")) {
			checkLiterals(t, ls, l)
		}
	}
	// Overlapping keys, keys inside keys, repeats.
	small := newLiteralSet([][]byte{[]byte("BUG: "), []byte("BUG: KASAN: "), []byte("G: K"), []byte("aa"), []byte("aab")})
	for _, l := range []string{"", "BUG: KASAN: x", "xBUG: BUG: KASAN", "aaab", "aabaa", "G: KG: K", "BUG:BUG: KAS"} {
		checkLiterals(t, small, []byte(l))
	}
}

// FuzzLiteralSet checks the automaton against bytes.Index on any line.
func FuzzLiteralSet(f *testing.F) {
	f.Add([]byte("[    1.0] BUG: KASAN: use-after-free in x"))
	f.Fuzz(func(t *testing.T, line []byte) { checkLiterals(t, compiled().lits, line) })
}

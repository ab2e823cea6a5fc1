package console

// literalSet finds every key literal of the signature table in a line in one
// pass (an Aho–Corasick automaton compiled to a DFA over byte classes), so
// that a line is read once however many keys the table has, instead of once
// per key. Most console lines contain no key at all; for them the pass is the
// whole cost of matching.
type literalSet struct {
	keys [][]byte
	// class maps a byte to its column in next: bytes that occur in no key
	// share class 0, which always leads back to the root's row.
	class   [256]uint8
	classes int
	// next[state*classes+class] is the row offset (state*classes) of the
	// state after reading a byte of that class, with hasOut set when keys end
	// there: the scan loop needs no multiplication and no second lookup.
	next []uint32
	// out[state] lists the keys that end at this state (its own and its
	// suffix links').
	out [][]uint16
}

// hasOut flags a next entry whose state ends a key.
const hasOut = 1 << 31

// maxKeys bounds the number of distinct literals (the size of keySet).
const maxKeys = 128

// keySet is a set of key indices.
type keySet [maxKeys / 64]uint64

func (k *keySet) add(i int)      { k[i>>6] |= 1 << (i & 63) }
func (k *keySet) has(i int) bool { return k[i>>6]&(1<<(i&63)) != 0 }
func (k *keySet) empty() bool    { return k[0]|k[1] == 0 }
func (k *keySet) reset()         { *k = keySet{} }

// newLiteralSet compiles keys (non-empty, at most maxKeys, total length below 65535).
func newLiteralSet(keys [][]byte) *literalSet {
	if len(keys) > maxKeys {
		panic("console: too many rule keys")
	}
	ls := &literalSet{keys: keys}
	for _, k := range keys {
		for _, c := range k {
			if ls.class[c] == 0 {
				ls.classes++
				ls.class[c] = uint8(ls.classes)
			}
		}
	}
	ls.classes++ // class 0: every other byte

	// The trie: goto[state][class], 0 meaning "no edge" (the root is state 0
	// and never the target of an edge).
	var trie [][]uint16
	newState := func() uint16 {
		trie = append(trie, make([]uint16, ls.classes))
		ls.out = append(ls.out, nil)
		return uint16(len(trie) - 1)
	}
	newState()
	for i, k := range keys {
		s := uint16(0)
		for _, c := range k {
			cl := ls.class[c]
			if trie[s][cl] == 0 {
				n := newState()
				trie[s][cl] = n
			}
			s = trie[s][cl]
		}
		ls.out[s] = append(ls.out[s], uint16(i))
	}

	// Breadth-first: suffix links, then the DFA rows (a missing edge takes
	// the suffix link's edge, already computed because it is shallower).
	n := len(trie)
	fail := make([]uint16, n)
	next := make([]uint16, n*ls.classes)
	queue := make([]uint16, 0, n)
	for cl := 0; cl < ls.classes; cl++ {
		if t := trie[0][cl]; t != 0 {
			next[cl] = t
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := fail[s]
		ls.out[s] = append(ls.out[s], ls.out[f]...)
		for cl := 0; cl < ls.classes; cl++ {
			if t := trie[s][cl]; t != 0 {
				fail[t] = next[int(f)*ls.classes+cl]
				next[int(s)*ls.classes+cl] = t
				queue = append(queue, t)
			} else {
				next[int(s)*ls.classes+cl] = next[int(f)*ls.classes+cl]
			}
		}
	}
	ls.next = make([]uint32, len(next))
	for i, t := range next {
		ls.next[i] = uint32(t) * uint32(ls.classes)
		if len(ls.out[t]) > 0 {
			ls.next[i] |= hasOut
		}
	}
	return ls
}

// find sets in found every key that occurs in line, and in first the offset
// of each key's first occurrence (entries of keys not found are left as they are).
func (ls *literalSet) find(line []byte, found *keySet, first []int) {
	found.reset()
	var s uint32
	next, class := ls.next, &ls.class
	for i, c := range line {
		e := next[s+uint32(class[c])]
		s = e &^ hasOut
		if e&hasOut == 0 {
			continue
		}
		for _, k := range ls.out[s/uint32(ls.classes)] {
			if !found.has(int(k)) {
				found.add(int(k))
				first[k] = i + 1 - len(ls.keys[k])
			}
		}
	}
}

// Package block is the IO probe's self-describing block format, after fio's
// verify=crc32c: every Size-byte block carries a header naming the file it
// belongs to, its offset and its write generation, a deterministic payload
// derived from those, and a CRC-32C over the whole block. A block read back
// can therefore say not only "this is wrong" but how: zeroed, from another
// file, from another offset, an older generation, or bit rot.
//
// Layout (little endian):
//
//	0  magic      uint32  0x4d585042 "MXPB"
//	4  crc32c     uint32  over the whole block with this field zeroed
//	8  file id    uint64
//	16 offset     uint64  byte offset of the block in its file
//	24 generation uint64  bumped on every overwrite of the block
//	32 seed       uint64  run seed; mixes into the payload
//	40 payload    Size-40 bytes of splitmix64(seed, id, offset, generation)
//
// The format is deliberately simpler than what it verifies (see DESIGN.md).
package block

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Size is the block size in bytes.
const Size = 4096

// Magic starts every block.
const Magic uint32 = 0x4d585042

const headerSize = 40

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header identifies a block.
type Header struct {
	FileID     uint64
	Offset     uint64
	Generation uint64
	Seed       uint64
}

func (h Header) String() string {
	return fmt.Sprintf("file=%#x offset=%d gen=%d", h.FileID, h.Offset, h.Generation)
}

// Fill writes the block for h into b (len(b) must be Size).
func Fill(b []byte, h Header) {
	_ = b[Size-1]
	binary.LittleEndian.PutUint32(b[0:], Magic)
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint64(b[8:], h.FileID)
	binary.LittleEndian.PutUint64(b[16:], h.Offset)
	binary.LittleEndian.PutUint64(b[24:], h.Generation)
	binary.LittleEndian.PutUint64(b[32:], h.Seed)
	fillPayload(b[headerSize:Size], h)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[:Size], castagnoli))
}

func fillPayload(p []byte, h Header) {
	x := h.Seed ^ h.FileID*0x9e3779b97f4a7c15 ^ h.Offset*0xbf58476d1ce4e5b9 ^ h.Generation*0x94d049bb133111eb
	for i := 0; i+8 <= len(p); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(p[i:], z^(z>>31))
	}
}

// Kind classifies what is wrong with a block. The zero Kind is OK.
type Kind string

// The corruption kinds Check tells apart.
const (
	OK Kind = ""
	// Zero: the block reads as all zeros (a hole, a lost write, a truncation).
	Zero Kind = "zero"
	// Short: fewer than Size bytes could be read (the file is shorter).
	Short Kind = "short"
	// BadMagic: not a probe block at all (foreign or shifted data).
	BadMagic Kind = "bad-magic"
	// Checksum: the CRC does not match (torn write, bit rot).
	Checksum Kind = "checksum"
	// WrongFile: an intact block of another file (misdirected write, wrong extent).
	WrongFile Kind = "wrong-file"
	// WrongOffset: an intact block of this file from another offset.
	WrongOffset Kind = "wrong-offset"
	// StaleGeneration: an intact older version of the block (a lost overwrite).
	StaleGeneration Kind = "stale-generation"
	// FutureGeneration: a newer version than expected (only possible when the
	// expectation lags, e.g. an unpromised write landed after a crash).
	FutureGeneration Kind = "future-generation"
	// Payload: header and CRC agree but the payload is not the one for the
	// header (a forged or colliding block).
	Payload Kind = "payload"
	// MissingFile: the file that should hold the block does not exist.
	MissingFile Kind = "missing-file"
	// Unexpected: a file that should have been deleted still exists.
	Unexpected Kind = "unexpected-file"
)

// Parse decodes the header of b without checking anything.
func Parse(b []byte) Header {
	return Header{
		FileID:     binary.LittleEndian.Uint64(b[8:]),
		Offset:     binary.LittleEndian.Uint64(b[16:]),
		Generation: binary.LittleEndian.Uint64(b[24:]),
		Seed:       binary.LittleEndian.Uint64(b[32:]),
	}
}

// Check verifies b against the expected header and returns the kind of
// corruption (OK when b is exactly the block Fill(want) writes) and the header found.
func Check(b []byte, want Header) (Kind, Header) {
	if len(b) < Size {
		return Short, Header{}
	}
	b = b[:Size]
	if allZero(b) {
		return Zero, Header{}
	}
	if binary.LittleEndian.Uint32(b[0:]) != Magic {
		return BadMagic, Header{}
	}
	got := Parse(b)
	stored := binary.LittleEndian.Uint32(b[4:])
	crc := crc32.New(castagnoli)
	crc.Write(b[:4])
	crc.Write([]byte{0, 0, 0, 0})
	crc.Write(b[8:])
	if crc.Sum32() != stored {
		return Checksum, got
	}
	switch {
	case got.FileID != want.FileID:
		return WrongFile, got
	case got.Offset != want.Offset:
		return WrongOffset, got
	case got.Generation < want.Generation:
		return StaleGeneration, got
	case got.Generation > want.Generation:
		return FutureGeneration, got
	case got.Seed != want.Seed:
		return Payload, got
	}
	var exp [Size - headerSize]byte
	fillPayload(exp[:], want)
	if string(exp[:]) != string(b[headerSize:]) {
		return Payload, got
	}
	return OK, got
}

// Describe renders what Check found for a mismatch record.
func Describe(k Kind, got Header) string {
	switch k {
	case Zero:
		return "zeros"
	case Short:
		return "short read"
	case BadMagic:
		return "no block header"
	case MissingFile:
		return "no such file"
	case Checksum:
		return "crc32c mismatch, header " + got.String()
	}
	return got.String()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

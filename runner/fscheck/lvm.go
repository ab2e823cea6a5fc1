package fscheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A devicemapper thin pool made with LVM (Docker's direct-lvm guide) keeps
// its metadata in a hidden logical volume (<pool>_tmeta) inside the LVM
// physical volume, not at the disk's start. lvmThinMeta finds that volume
// from the PV's own on-disk records, read-only and without LVM's tools
// (which would activate the volume group on the host): the label in one of
// the first four sectors, its first metadata area, and the newest text
// metadata in it (LVM2's format_text: label.h, layout.h, and the
// "Text Format Volume Group" syntax).

const sectorSize = 512

// extent is a byte range of the image.
type extent struct{ off, len int64 }

// lvmThinMeta returns where image's thin pool metadata lies: the extents of
// the metadata LV of the volume group's one thin pool, in LV order.
func lvmThinMeta(r io.ReaderAt) ([]extent, error) {
	pvUUID, mda, err := readPVLabel(r)
	if err != nil {
		return nil, err
	}
	text, err := readMetadataText(r, mda)
	if err != nil {
		return nil, err
	}
	root, err := parseLVMConfig(text)
	if err != nil {
		return nil, fmt.Errorf("lvm metadata: %w", err)
	}
	return thinMetaExtents(root, pvUUID)
}

// readPVLabel finds the LVM label and returns the PV's UUID and the offset
// of its first metadata area.
func readPVLabel(r io.ReaderAt) (string, int64, error) {
	buf := make([]byte, 4*sectorSize)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return "", 0, fmt.Errorf("lvm label: %w", err)
	}
	for s := 0; s < 4; s++ {
		sec := buf[s*sectorSize : (s+1)*sectorSize]
		if string(sec[:8]) != "LABELONE" || string(sec[24:32]) != "LVM2 001" {
			continue
		}
		// label_header: id[8] sector u64 crc u32 offset u32 type[8]; then
		// pv_header at offset: uuid[32] size u64, data areas and metadata
		// areas as {offset u64, size u64} lists, each ending in zeros.
		ph := int(binary.LittleEndian.Uint32(sec[20:24]))
		if ph < 32 || ph+48 > sectorSize {
			return "", 0, fmt.Errorf("lvm label in sector %d: pv header at %d", s, ph)
		}
		uuid := string(sec[ph : ph+32])
		p := ph + 40
		for list := 0; list < 2; list++ {
			for ; p+16 <= sectorSize; p += 16 {
				off := binary.LittleEndian.Uint64(sec[p:])
				size := binary.LittleEndian.Uint64(sec[p+8:])
				if off == 0 && size == 0 {
					p += 16
					break
				}
				if list == 1 {
					return uuid, int64(off), nil
				}
			}
		}
		return "", 0, errors.New("lvm label: the physical volume has no metadata area")
	}
	return "", 0, errors.New("no LVM label in the first four sectors")
}

// mdaMagic starts every metadata area header (layout.h FMTT_MAGIC).
const mdaMagic = "\x20\x4c\x56\x4d\x32\x20\x78\x5b\x35\x41\x25\x72\x30\x4e\x2a\x3e"

// readMetadataText reads the newest metadata text of the area at mda: the
// header (checksum u32, magic[16], version u32, start u64, size u64, then
// raw locations {offset u64, size u64, checksum u32, flags u32}) names it;
// the area is a ring buffer after its 512-byte header.
func readMetadataText(r io.ReaderAt, mda int64) ([]byte, error) {
	h := make([]byte, sectorSize)
	if _, err := r.ReadAt(h, mda); err != nil {
		return nil, fmt.Errorf("lvm metadata area at %d: %w", mda, err)
	}
	if string(h[4:20]) != mdaMagic {
		return nil, fmt.Errorf("lvm metadata area at %d: bad magic", mda)
	}
	areaSize := int64(binary.LittleEndian.Uint64(h[32:40]))
	off := int64(binary.LittleEndian.Uint64(h[40:48]))
	size := int64(binary.LittleEndian.Uint64(h[48:56]))
	if off < sectorSize || size <= 0 || off >= areaSize || size > areaSize {
		return nil, fmt.Errorf("lvm metadata area at %d: no metadata (offset %d size %d in %d)", mda, off, size, areaSize)
	}
	text := make([]byte, size)
	first := min(size, areaSize-off)
	if _, err := r.ReadAt(text[:first], mda+off); err != nil {
		return nil, fmt.Errorf("lvm metadata: %w", err)
	}
	if first < size { // wrapped to the start of the ring
		if _, err := r.ReadAt(text[first:], mda+sectorSize); err != nil {
			return nil, fmt.Errorf("lvm metadata: %w", err)
		}
	}
	return bytes.TrimRight(text, "\x00"), nil
}

// section is a parsed { ... } block of LVM's config syntax.
type section struct {
	values   map[string]any // string, int64 or []any
	sections map[string]*section
}

func (s *section) str(k string) string {
	v, _ := s.values[k].(string)
	return v
}

func (s *section) num(k string) (int64, bool) {
	v, ok := s.values[k].(int64)
	return v, ok
}

// thinMetaExtents picks the volume group's one thin pool and maps its
// metadata LV's segments onto the physical volume uuid.
func thinMetaExtents(root *section, uuid string) ([]extent, error) {
	var vg *section
	for _, s := range root.sections {
		if s.sections["logical_volumes"] != nil && s.sections["physical_volumes"] != nil {
			vg = s
		}
	}
	if vg == nil {
		return nil, errors.New("lvm metadata: no volume group")
	}
	extentSize, ok := vg.num("extent_size")
	if !ok || extentSize <= 0 {
		return nil, errors.New("lvm metadata: no extent_size")
	}
	pvName := ""
	var peStart int64
	for name, pv := range vg.sections["physical_volumes"].sections {
		if strings.ReplaceAll(pv.str("id"), "-", "") == uuid {
			pvName = name
			peStart, _ = pv.num("pe_start")
		}
	}
	if pvName == "" {
		return nil, fmt.Errorf("lvm metadata: physical volume %s is not in its volume group", uuid)
	}
	lvs := vg.sections["logical_volumes"].sections
	var metaLV []string
	for _, lv := range lvs {
		for _, seg := range lv.sections {
			if seg.str("type") == "thin-pool" {
				metaLV = append(metaLV, seg.str("metadata"))
			}
		}
	}
	if len(metaLV) != 1 {
		return nil, fmt.Errorf("lvm metadata: %d thin pools, want 1", len(metaLV))
	}
	meta := lvs[metaLV[0]]
	if meta == nil {
		return nil, fmt.Errorf("lvm metadata: no logical volume %q", metaLV[0])
	}
	type seg struct{ start, count, pe int64 }
	var segs []seg
	for name, s := range meta.sections {
		start, ok1 := s.num("start_extent")
		count, ok2 := s.num("extent_count")
		stripes, _ := s.values["stripes"].([]any)
		if s.str("type") != "striped" || !ok1 || !ok2 || len(stripes) != 2 {
			return nil, fmt.Errorf("lvm metadata: %s %s is not one linear stripe", metaLV[0], name)
		}
		pv, _ := stripes[0].(string)
		pe, ok := stripes[1].(int64)
		if pv != pvName || !ok {
			return nil, fmt.Errorf("lvm metadata: %s %s lies on %v, not on %s", metaLV[0], name, stripes[0], pvName)
		}
		segs = append(segs, seg{start, count, pe})
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("lvm metadata: %s has no segments", metaLV[0])
	}
	slices.SortFunc(segs, func(a, b seg) int { return int(a.start - b.start) })
	out := make([]extent, len(segs))
	for i, s := range segs {
		out[i] = extent{off: (peStart + s.pe*extentSize) * sectorSize, len: s.count * extentSize * sectorSize}
	}
	return out, nil
}

// parseLVMConfig parses LVM's config syntax: name = value, name { ... },
// values strings, integers or [lists], # comments.
func parseLVMConfig(text []byte) (*section, error) {
	p := &lvmParser{s: string(text)}
	root, err := p.section(0)
	if err != nil {
		return nil, fmt.Errorf("at byte %d: %w", p.i, err)
	}
	return root, nil
}

type lvmParser struct {
	s string
	i int
}

// token returns the next token: one of = { } [ ] , or a string (with its
// quotes), number or name; "" at the end.
func (p *lvmParser) token() (string, error) {
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.i++
		case strings.IndexByte("={}[],", c) >= 0:
			p.i++
			return string(c), nil
		case c == '"':
			var b strings.Builder
			b.WriteByte('"')
			for p.i++; p.i < len(p.s); p.i++ {
				switch p.s[p.i] {
				case '\\':
					p.i++
					if p.i < len(p.s) {
						b.WriteByte(p.s[p.i])
					}
				case '"':
					p.i++
					return b.String(), nil
				default:
					b.WriteByte(p.s[p.i])
				}
			}
			return "", errors.New("unterminated string")
		default:
			start := p.i
			for p.i < len(p.s) && strings.IndexByte("={}[],#\" \t\r\n", p.s[p.i]) < 0 {
				p.i++
			}
			return p.s[start:p.i], nil
		}
	}
	return "", nil
}

func (p *lvmParser) section(depth int) (*section, error) {
	if depth > 16 {
		return nil, errors.New("nested too deep")
	}
	s := &section{values: map[string]any{}, sections: map[string]*section{}}
	for {
		name, err := p.token()
		if err != nil {
			return nil, err
		}
		switch name {
		case "":
			if depth > 0 {
				return nil, errors.New("unexpected end")
			}
			return s, nil
		case "}":
			if depth == 0 {
				return nil, errors.New("unexpected }")
			}
			return s, nil
		}
		op, err := p.token()
		if err != nil {
			return nil, err
		}
		switch op {
		case "{":
			sub, err := p.section(depth + 1)
			if err != nil {
				return nil, err
			}
			s.sections[name] = sub
		case "=":
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			s.values[name] = v
		default:
			return nil, fmt.Errorf("after %q: %q, want = or {", name, op)
		}
	}
}

func (p *lvmParser) value() (any, error) {
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	if t != "[" {
		return scalar(t)
	}
	list := []any{}
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t {
		case "]":
			return list, nil
		case ",":
			continue
		case "":
			return nil, errors.New("unterminated list")
		}
		v, err := scalar(t)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
}

func scalar(t string) (any, error) {
	if s, ok := strings.CutPrefix(t, `"`); ok {
		return s, nil
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return n, nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return t, nil // floats are not needed here
	}
	return nil, fmt.Errorf("bad value %q", t)
}

// copyExtents copies the extents of image into a new sparse file in dir and
// returns its path.
func copyExtents(image string, exts []extent, dir string) (string, error) {
	in, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, "thin-meta-*.img")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		out.Close()
		if !ok {
			os.Remove(out.Name())
		}
	}()
	buf := make([]byte, 1<<20)
	var at int64
	for _, e := range exts {
		for done := int64(0); done < e.len; {
			n := min(int64(len(buf)), e.len-done)
			if _, err := in.ReadAt(buf[:n], e.off+done); err != nil {
				return "", fmt.Errorf("read %s at %d: %w", image, e.off+done, err)
			}
			if !allZero(buf[:n]) { // keep the copy sparse
				if _, err := out.WriteAt(buf[:n], at); err != nil {
					return "", err
				}
			}
			done += n
			at += n
		}
	}
	if err := out.Truncate(at); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	ok = true
	return out.Name(), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

package matrix

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ParseShard parses "i/n" (1 <= i <= n).
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n || n > MaxCells {
		return 0, 0, &FilterError{Flag: "shard", Values: []string{s}, Msg: "want i/n with 1 <= i <= n, e.g. 2/5"}
	}
	return i, n, nil
}

// Shard returns shard i of n (1-based) of cells. Cells are sorted by ID and
// dealt round-robin, runnable cells first and unsupported ones separately, so
// every shard gets a fair share of the cells that boot. Every cell is in
// exactly one shard and the split depends only on the cell IDs, so it is the
// same on every machine. The result is in plan order.
func Shard(cells []Cell, i, n int) ([]Cell, error) {
	if n < 1 || i < 1 || i > n {
		return nil, &FilterError{Flag: "shard", Values: []string{fmt.Sprintf("%d/%d", i, n)}, Msg: "want i/n with 1 <= i <= n"}
	}
	in := map[string]bool{}
	for _, status := range []Status{StatusRunnable, StatusUnsupported} {
		var ids []string
		for _, c := range cells {
			if (c.Status == StatusUnsupported) == (status == StatusUnsupported) {
				ids = append(ids, c.ID)
			}
		}
		slices.SortFunc(ids, cmp.Compare)
		for j, id := range ids {
			if j%n == i-1 {
				in[id] = true
			}
		}
	}
	var out []Cell
	for _, c := range cells {
		if in[c.ID] {
			out = append(out, c)
		}
	}
	return out, nil
}

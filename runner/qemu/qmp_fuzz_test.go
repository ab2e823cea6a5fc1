package qemu

import "testing"

// FuzzParseBlockNodes feeds QEMU's query-named-block-nodes reply parser (and
// the arming check on top of it) arbitrary bytes: it must return nodes or an
// error, never panic.
func FuzzParseBlockNodes(f *testing.F) {
	f.Add([]byte(armedReply))
	f.Add([]byte(`{"return": []}`))
	f.Add([]byte(`{"error": {"class": "GenericError", "desc": "x"}}`))
	f.Add([]byte(`{"return": [{"node-name": "scratch-fmt", "drv": "raw", "file": "/x"}, null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := parseBlockNodes(b)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if n.NodeName == "" {
				t.Fatalf("node without a name kept: %+v", n)
			}
		}
		checkArmed(nodes)
	})
}

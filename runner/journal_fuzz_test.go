package runner

import (
	"bytes"
	"testing"
)

// FuzzReadJournal: a journal is read back after crashes and may be torn or
// damaged; reading it must never panic, and a clean prefix must be accepted.
func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(`{"type":"header","header":{"schema":"x","run_id":"r","provider":"fake","runs":[]},"plan":{"cells":[]}}` + "\n" +
		`{"type":"started","cell":"a","repeat":1,"attempt":1}` + "\n" +
		`{"type":"machine","cell":"a","repeat":1,"machine":{"pid":1,"start_ticks":2}}` + "\n" +
		`{"type":"finished","cell":"a","repeat":1,"run":{"cell":"a","repeat":1,"verdict":"pass"}}` + "\n"))
	f.Add([]byte(`{"type":"header"}` + "\n" + `{"type":"fini`))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := readJournal(bytes.NewReader(data))
		if err != nil {
			return
		}
		if st.Header == nil || st.Plan == nil {
			t.Fatal("accepted a journal without header")
		}
		for k := range st.InFlight {
			if _, done := st.Finished[k]; done {
				t.Fatalf("%v both finished and in flight", k)
			}
		}
	})
}

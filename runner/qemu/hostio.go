package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A write to a disk image can fail on the host: the results disk (where
// scratch.img lives) is full. The scratch device's werror=enospc makes QEMU
// pause the guest instead of handing the guest an I/O error it would
// blame on the cell (docker-failure, fs-corruption). The paused guest
// falls silent; before the watchdog calls that a hang it asks QEMU, and a
// VM paused on a host I/O error ends with ExitHostIOError, which the runner
// treats as an infrastructure failure (retried, never counted).

// hostIOQueryTimeout bounds the status query of a silent VM (a SIGSTOPped
// QEMU does not answer).
const hostIOQueryTimeout = 3 * time.Second

// pausedOnHostIOError asks QEMU whether it paused the guest on a host I/O
// error and returns a description (which device, whether the host was out
// of space), or "" if not or if QEMU does not answer.
func (v *VM) pausedOnHostIOError() string {
	ctx, cancel := context.WithTimeout(context.Background(), hostIOQueryTimeout)
	defer cancel()
	replies, err := v.qmpRun(ctx, qmpCommand{Execute: "query-status"}, qmpCommand{Execute: "query-block"})
	if err != nil || len(replies) != 2 {
		return ""
	}
	status, err := parseStatus(replies[0])
	if err != nil || status != "io-error" {
		return ""
	}
	devs, err := parseIOStatus(replies[1])
	if err != nil || len(devs) == 0 {
		return "QEMU paused the guest on a host I/O error"
	}
	return "QEMU paused the guest on a host I/O error: " + strings.Join(devs, ", ")
}

// parseStatus reads query-status's {"return": {"status": "..."}}.
func parseStatus(b []byte) (string, error) {
	var r struct {
		Return *struct {
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("query-status reply: %w", err)
	}
	if r.Return == nil {
		return "", errors.New("query-status reply: no return value")
	}
	return r.Return.Status, nil
}

// parseIOStatus reads query-block's devices whose io-status is not ok, as
// "<device>: <io-status>" ("nospace": the host filesystem is full). The
// reply is outside input: only strings are taken from it.
func parseIOStatus(b []byte) ([]string, error) {
	var r struct {
		Return *[]struct {
			Device   string `json:"device"`
			QDev     string `json:"qdev"`
			IOStatus string `json:"io-status"`
		} `json:"return"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query-block reply: %w", err)
	}
	if r.Return == nil {
		return nil, errors.New("query-block reply: no return value")
	}
	var out []string
	for _, d := range *r.Return {
		if d.IOStatus == "" || d.IOStatus == "ok" {
			continue
		}
		name := d.Device
		if name == "" {
			name = d.QDev
		}
		what := d.IOStatus
		if what == "nospace" {
			what = "nospace (the host filesystem holding its image is full)"
		}
		out = append(out, fmt.Sprintf("%s: %s", name, what))
	}
	return out, nil
}

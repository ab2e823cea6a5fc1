package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// qmpSocket is QEMU's QMP socket in the VM's private socket dir (removed by Close).
const qmpSocket = "qmp.sock"

// qmpDialTimeout bounds connecting to the QMP socket.
const qmpDialTimeout = 5 * time.Second

// qmpCommand is one QMP command.
type qmpCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
}

// qmpRun opens a QMP session (greeting, capabilities), runs cmds in order
// and returns their replies; it stops at the first command QEMU refuses.
// Errors are *InfraError naming the command and carrying QEMU's message.
//
// go-qemu's monitor takes no context: the session runs in its own goroutine,
// which stops before each command once ctx has ended. When ctx ends while
// QEMU does not answer (SIGSTOP), qmpRun returns and the goroutine ends
// when QEMU's end closes the socket.
func (v *VM) qmpRun(ctx context.Context, cmds ...qmpCommand) ([][]byte, error) {
	select {
	case <-v.exited:
		return nil, &InfraError{Op: "qmp " + cmds[0].Execute, Err: errors.New("vm has exited")}
	default:
	}
	type result struct {
		replies [][]byte
		err     error
	}
	done := make(chan result, 1)
	go func() {
		r, err := qmpSession(ctx, filepath.Join(v.sockDir, qmpSocket), cmds)
		done <- result{r, err}
	}()
	select {
	case r := <-done:
		return r.replies, r.err
	case <-ctx.Done():
		return nil, &InfraError{Op: "qmp " + cmds[0].Execute, Err: ctx.Err()}
	case <-v.exited:
		return nil, &InfraError{Op: "qmp " + cmds[0].Execute, Err: fmt.Errorf("vm exited (%s)", v.exit)}
	}
}

func qmpSession(ctx context.Context, path string, cmds []qmpCommand) ([][]byte, error) {
	mon, err := qmp.NewSocketMonitor("unix", path, qmpDialTimeout)
	if err != nil {
		return nil, &InfraError{Op: "qmp connect", Err: err}
	}
	// Disconnect closes the socket; with no session (Connect failed) it
	// only does that.
	defer mon.Disconnect()
	if err := mon.Connect(); err != nil {
		return nil, &InfraError{Op: "qmp handshake", Err: err}
	}
	var replies [][]byte
	for _, c := range cmds {
		if err := ctx.Err(); err != nil {
			return nil, &InfraError{Op: "qmp " + c.Execute, Err: err}
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, &InfraError{Op: "qmp " + c.Execute, Err: err}
		}
		// go-qemu returns QEMU's error reply as an error holding its "desc".
		out, err := mon.Run(b)
		if err != nil {
			return nil, &InfraError{Op: "qmp " + c.Execute, Err: err, Output: string(b)}
		}
		replies = append(replies, out)
	}
	return replies, nil
}

// blockNode is the part of one query-named-block-nodes entry matrixctl reads.
type blockNode struct {
	NodeName string `json:"node-name"`
	Driver   string `json:"drv"`
	File     string `json:"file"`
	ReadOnly bool   `json:"ro"`
}

// parseBlockNodes parses QEMU's reply to query-named-block-nodes
// ({"return": [...]}). The reply is outside input: anything but a list of
// objects is an error, and entries without a node name are skipped.
func parseBlockNodes(b []byte) ([]blockNode, error) {
	var r struct {
		Return *[]json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query-named-block-nodes reply: %w", err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("query-named-block-nodes: %s: %s", r.Error.Class, r.Error.Desc)
	}
	if r.Return == nil {
		return nil, errors.New("query-named-block-nodes reply: no return value")
	}
	var nodes []blockNode
	for i, raw := range *r.Return {
		var n blockNode
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("query-named-block-nodes reply: entry %d: %w", i, err)
		}
		if n.NodeName != "" {
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

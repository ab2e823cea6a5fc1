package qemu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// The scratch drive is a chain of named block nodes so that QMP can change it
// while the guest runs:
//
//	virtio-blk (serial agentproto.SerialScratch, werror=enospc, rerror=report)
//	  └ scratchFormat (raw)
//	      └ [scratchInject (blkdebug, armed by InjectIOErrors)]
//	          └ [scratchRules (blkdebug, Config.ScratchBlkdebug)]
//	              └ scratchFile (file: <Dir>/scratch.img)
const (
	scratchFile   = "scratch-file"
	scratchRules  = "scratch-rules"
	scratchFormat = "scratch-fmt"
	scratchInject = "scratch-eio"
)

// scratchArgs defines the scratch drive with -blockdev (the rootfs and module
// drives keep -drive: nothing changes them at run time). The device keeps
// what -drive gave it: the serial the agent finds the disk by, errors
// reported to the guest, write cache on; except that a write failing with
// ENOSPC on the host pauses the guest (werror=enospc, see hostio.go): a
// full results disk is not the cell's fault.
func (v *VM) scratchArgs() []string {
	args := []string{"-blockdev", "driver=file,node-name=" + scratchFile + ",filename=" + qemuEscape(v.scratch)}
	if v.cfg.ScratchBlkdebug != "" {
		args = append(args, "-blockdev", "driver=blkdebug,node-name="+scratchRules+",image="+scratchFile+
			",config="+qemuEscape(v.cfg.ScratchBlkdebug))
	}
	return append(args,
		"-blockdev", "driver=raw,node-name="+scratchFormat+",file="+v.scratchBase(),
		"-device", "virtio-blk-pci,id=scratch,drive="+scratchFormat+",serial="+agentproto.SerialScratch+
			",werror=enospc,rerror=report,write-cache=on")
}

// scratchBase is the node under the raw format node when no errors are armed.
func (v *VM) scratchBase() string {
	if v.cfg.ScratchBlkdebug != "" {
		return scratchRules
	}
	return scratchFile
}

// IOErrorOp is a kind of guest I/O on the scratch drive that InjectIOErrors makes fail.
type IOErrorOp string

// I/O operations that can be made to fail.
const (
	IORead  IOErrorOp = "read"
	IOWrite IOErrorOp = "write"
)

// errnoEIO is the errno the failing requests complete with.
const errnoEIO = 5

// blkdebugRule is the blkdebug inject-error rule that fails one kind of I/O:
// the raw node signals event before each request, and the rule it activates
// fails requests of iotype.
type blkdebugRule struct {
	event, iotype string
}

// ioErrorRules maps an IOErrorOp to its blkdebug rule.
func ioErrorRules() map[IOErrorOp]blkdebugRule {
	return map[IOErrorOp]blkdebugRule{
		IORead:  {event: "read_aio", iotype: "read"},
		IOWrite: {event: "write_aio", iotype: "write"},
	}
}

// IOErrors is what InjectIOErrors armed.
type IOErrors struct {
	// Ops are the kinds of I/O that fail.
	Ops []IOErrorOp
	// Errno is what the failing requests complete with (5, EIO).
	Errno int
	// Node is the blkdebug node inserted under the scratch drive's format node.
	Node string
	// At is when QEMU accepted the change; Uptime is At since QEMU's launch.
	At     time.Time
	Uptime time.Duration
	// Drive is QEMU's own description of the scratch drive after the
	// change (query-named-block-nodes: the format node's file name).
	Drive string
}

func (e IOErrors) String() string {
	ops := make([]string, len(e.Ops))
	for i, op := range e.Ops {
		ops[i] = string(op)
	}
	return fmt.Sprintf("scratch drive %s errors (errno %d) via blkdebug node %s, armed %s after launch",
		strings.Join(ops, "+"), e.Errno, e.Node, e.Uptime.Round(time.Millisecond))
}

// InjectIOErrors makes every later guest request of the given kinds on the
// scratch drive fail with EIO (default: read and write): through QMP it adds
// a blkdebug node over the drive's current file node and reopens the raw
// format node onto it. The guest kernel sees real failed requests ("I/O
// error, dev vdX, sector ..."), and its filesystem reacts as it does to a
// failing disk. The errors stay armed until ClearIOErrors or the VM ends.
//
// Errors: a bad op or a second arming is the caller's error; QMP trouble
// (QEMU refused, socket gone, ctx ended) is an *InfraError carrying QEMU's
// message. When ctx ends while QEMU does not answer (a frozen VM), the
// session is abandoned and ends at the latest when the VM is closed.
func (v *VM) InjectIOErrors(ctx context.Context, ops ...IOErrorOp) (IOErrors, error) {
	if len(ops) == 0 {
		ops = []IOErrorOp{IORead, IOWrite}
	}
	table := ioErrorRules()
	var rules []any
	seen := map[IOErrorOp]bool{}
	for _, op := range ops {
		r, ok := table[op]
		if !ok {
			return IOErrors{}, fmt.Errorf("inject io errors: unknown op %q (want %s or %s)", op, IORead, IOWrite)
		}
		if seen[op] {
			continue
		}
		seen[op] = true
		rules = append(rules, map[string]any{"event": r.event, "iotype": r.iotype, "errno": errnoEIO, "once": false})
	}
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	v.mu.Lock()
	armed := v.ioErrors
	v.mu.Unlock()
	if armed != nil {
		return IOErrors{}, fmt.Errorf("inject io errors: already armed (%s)", armed)
	}
	replies, err := v.qmpRun(ctx,
		qmpCommand{Execute: "blockdev-add", Arguments: map[string]any{
			"driver": "blkdebug", "node-name": scratchInject, "image": v.scratchBase(), "inject-error": rules}},
		qmpCommand{Execute: "blockdev-reopen", Arguments: map[string]any{
			"options": []any{map[string]any{"driver": "raw", "node-name": scratchFormat, "file": scratchInject}}}},
		qmpCommand{Execute: "query-named-block-nodes", Arguments: map[string]any{"flat": true}},
	)
	if err != nil {
		return IOErrors{}, err
	}
	at := time.Now()
	nodes, err := parseBlockNodes(replies[2])
	if err != nil {
		return IOErrors{}, &InfraError{Op: "inject io errors: query-named-block-nodes", Err: err}
	}
	drive, err := checkArmed(nodes)
	if err != nil {
		return IOErrors{}, &InfraError{Op: "inject io errors", Err: err}
	}
	res := IOErrors{Errno: errnoEIO, Node: scratchInject, At: at, Uptime: at.Sub(v.launched), Drive: drive}
	for _, op := range ops {
		if seen[op] {
			res.Ops, seen[op] = append(res.Ops, op), false
		}
	}
	v.mu.Lock()
	v.ioErrors = &res
	v.mu.Unlock()
	v.Logf("fault: %s", res)
	return res, nil
}

// ClearIOErrors undoes InjectIOErrors: the format node is reopened onto the
// drive's file node again and the blkdebug node is deleted. Requests the
// guest retries from then on succeed. Clearing when nothing is armed is a no-op.
func (v *VM) ClearIOErrors(ctx context.Context) error {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	v.mu.Lock()
	armed := v.ioErrors
	v.mu.Unlock()
	if armed == nil {
		return nil
	}
	_, err := v.qmpRun(ctx,
		qmpCommand{Execute: "blockdev-reopen", Arguments: map[string]any{
			"options": []any{map[string]any{"driver": "raw", "node-name": scratchFormat, "file": v.scratchBase()}}}},
		qmpCommand{Execute: "blockdev-del", Arguments: map[string]any{"node-name": scratchInject}},
	)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.ioErrors = nil
	v.mu.Unlock()
	v.Logf("fault: scratch drive io errors cleared")
	return nil
}

// ArmedIOErrors returns what InjectIOErrors armed, if anything is armed.
func (v *VM) ArmedIOErrors() (IOErrors, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ioErrors == nil {
		return IOErrors{}, false
	}
	return *v.ioErrors, true
}

// checkArmed confirms from QEMU's node list that the blkdebug node exists
// and sits under the format node; it returns the format node's file name.
func checkArmed(nodes []blockNode) (string, error) {
	byName := map[string]blockNode{}
	for _, n := range nodes {
		byName[n.NodeName] = n
	}
	inj, ok := byName[scratchInject]
	if !ok || inj.Driver != "blkdebug" {
		return "", fmt.Errorf("qemu lists no blkdebug node %s after arming (%d nodes)", scratchInject, len(nodes))
	}
	fmtNode, ok := byName[scratchFormat]
	if !ok {
		return "", errors.New("qemu lists no scratch format node " + scratchFormat)
	}
	if !strings.Contains(fmtNode.File, `"blkdebug"`) || !strings.Contains(fmtNode.File, "inject-error") {
		return "", fmt.Errorf("scratch format node %s does not sit on blkdebug after the reopen: %s", scratchFormat, fmtNode.File)
	}
	return fmtNode.File, nil
}

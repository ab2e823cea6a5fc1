package baseline

import (
	"github.com/matrixctl/matrixctl/api/results"
	"regexp"
	"sync"
)

// endKind says how the scanner finds the last line of a report.
type endKind int

const (
	// endSingle: the header line is the whole report. Repeats of the same
	// non-fatal title close together are folded into one finding.
	endSingle endKind = iota
	// endMarker: every line belongs to the report until the marker line
	// (e.g. "---[ end trace ... ]---"). A header of a category the rule does
	// not absorb interrupts the report, which is then flagged corrupted.
	endMarker
	// endBody: the report goes on while lines look like report body
	// (registers, stack frames, the row's own body lines); the first other
	// line ends it. With anyUntil set, every line belongs to the report until
	// anyUntil matches, then the body rule applies.
	endBody
)

// rule is one crash signature: a row of the table below.
type rule struct {
	cat results.Category
	sev results.Severity
	// key is a literal the message must contain: a cheap filter before header.
	key string
	// header matches the report's first line (the message after the kernel
	// timestamp and caller prefix), anchored at its start.
	header string
	// title is the title format: {1}..{9} are header groups, {e1}..{e9} are
	// groups of the end marker, {frame} is the guilty function (frameGroup,
	// then RIP, then the call trace, skipping generic frames). All are
	// normalised. When no guilty frame is found, " in {frame}" is dropped.
	title string
	// frameGroup is the header group holding a function (func+0x1/0x2), or 0.
	frameGroup int
	end        endKind
	// marker ends an endMarker report; empty means "---[ end trace".
	marker string
	// anyUntil (endBody only): absorb every line until this matches.
	anyUntil string
	// body: extra body lines for endBody, besides the generic ones.
	body string
	// absorbs: headers of these categories inside an open report belong to
	// it (a rule always absorbs its own category and kernel panics).
	absorbs []results.Category
	// absorbAll: an open endMarker report takes every line, headers included.
	absorbAll bool
	// ignore: benign line; it matches so that later rows do not, and gives no finding.
	ignore bool
	// banner: the boot banner; only the second and later ones are findings.
	banner bool
}

// Shared pieces of the table.
const (
	endTrace = `^-+\[ end trace`
	// endPanic: with panic=-1 (or panic=N) the kernel reboots right after
	// "Kernel Offset:" and never prints the end marker.
	endPanic = `^-+\[ end Kernel panic|^Kernel Offset: |^Rebooting in \d+ seconds`
	// kasanEnd ends KASAN/KFENCE/KMSAN/UBSAN reports (6.5+ UBSAN ends with an end-trace line).
	kasanEnd = `^(?:=+|-+\[ end trace.*)$`
	hungBody = `^task:\S+\s+state:|^"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message|` +
		`^INFO: task \S.* is blocked on|^Future hung task reports are suppressed`
	rcuBody = `^rcu: |^\(detected by|^Task dump for CPU|^task:\S+\s+state:|^Sending NMI|^NMI backtrace`
	wqBody  = `^Showing (?:busy workqueues|backtraces)|^workqueue \S+: flags=|^pool \d+:|^Workqueue: `
	// memBody is the memory report printed by OOM kills and allocation failures.
	memBody = `^Mem-Info:|^active_anon:|^Node \d+ |^lowmem_reserve\[\]:|^\d+ total pagecache pages|` +
		`^\d+ pages |^Free swap|^Total swap|^Tasks state|^\[\s*\d+\]\s|^\[\s+pid\s+\]|^SLUB: |^\s*cache: |` +
		`^\s*node \d+: slabs:|^warn_alloc: |^DMA|^Normal|^HighMem|^Movable`
	atomicBody = `^in_atomic\(\)|^preempt_count:|^RCU nest depth|^Preemption disabled at:|^\[<[0-9a-f]+>\]|` +
		`^INFO: lockdep is turned off|^irq event stamp|^hardirqs last|^softirqs last`
	xfsBody = `^XFS \(|^[0-9a-f]{8}: `
	mceBody = `^(?:mce: )?\[Hardware Error\]|^(?:\{\d+\})?\[Hardware Error\]`
	// panicConsequence: panic messages that only restate a report printed just before.
	panicConsequence = `^(?:Fatal exception(?: in interrupt)?|softlockup: hung tasks|hung_task: blocked tasks|` +
		`[Hh]ard LOCKUP|Oops(?: - BUG)?(?:: Fatal exception)?|(?:kernel: )?panic_on_warn set.*|RCU Stall|` +
		`Watchdog detected hard LOCKUP on cpu \d+|kernel BUG.*|Machine halted\.?)\s*$`
)

// rules is the signature table. The first row whose header matches a line wins,
// so specific rows come before generic ones and benign rows before error rows.
func rules() []rule {
	oopsFamily := []results.Category{results.CatOops, results.CatTrap, results.CatGPF, results.CatBug, results.CatWarning, results.CatKASAN}
	return []rule{
		// The boot banner: a second one means the machine rebooted.
		{cat: results.CatUnexpectedReboot, sev: results.SevFatal, key: "Linux version ", header: `^Linux version \d+\.\d+\S* \(`,
			title: "unexpected reboot", end: endSingle, banner: true},

		// Panics with a known cause first, then every other panic.
		{cat: results.CatStackCorruption, sev: results.SevFatal, key: "stack-protector",
			header: `^Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: (\S+)`,
			title:  "stack-protector: kernel stack is corrupted in {frame}", frameGroup: 1, end: endMarker, marker: endPanic},
		{cat: results.CatStackCorruption, sev: results.SevFatal, key: "corrupted stack end",
			header: `^Kernel panic - not syncing: corrupted stack end detected inside scheduler`,
			title:  "corrupted stack end detected inside scheduler in {frame}", end: endMarker, marker: endPanic},
		{cat: results.CatMachineCheck, sev: results.SevFatal, key: "Kernel panic - not syncing: ",
			header: `^Kernel panic - not syncing: (Fatal [Mm]achine check|Machine check from unknown source|` +
				`Timeout: Not all CPUs entered broadcast exception handler|Fatal hardware error!?|MCE: .*)`,
			title: "machine check: {1}", end: endMarker, marker: endPanic},
		{cat: results.CatKernelPanic, sev: results.SevFatal, key: "Kernel panic - not syncing", header: `^Kernel panic - not syncing: ?(.*)`,
			title: "kernel panic: {1}", end: endMarker, marker: endPanic},

		// Memory-safety tools: reports framed by "=====" lines.
		{cat: results.CatKASAN, sev: results.SevFatal, key: "BUG: KASAN: ", header: `^BUG: KASAN: (.+?) in (\S+)`,
			title: "KASAN: {1} in {frame}", frameGroup: 2, end: endMarker, marker: kasanEnd, absorbAll: true},
		{cat: results.CatKFENCE, sev: results.SevFatal, key: "BUG: KFENCE: ", header: `^BUG: KFENCE: (.+?) in (\S+)`,
			title: "KFENCE: {1} in {frame}", frameGroup: 2, end: endMarker, marker: kasanEnd, absorbAll: true},
		{cat: results.CatKMSAN, sev: results.SevFatal, key: "BUG: KMSAN: ", header: `^BUG: KMSAN: (.+?) in (\S+)`,
			title: "KMSAN: {1} in {frame}", frameGroup: 2, end: endMarker, marker: kasanEnd, absorbAll: true},
		{cat: results.CatUBSAN, sev: results.SevError, key: "UBSAN: ", header: `^UBSAN: (.+?) in (\S+)`,
			title: "UBSAN: {1} in {frame}", end: endMarker, marker: kasanEnd, absorbAll: true},
		{cat: results.CatKmemleak, sev: results.SevWarning, key: "kmemleak: ", header: `^kmemleak: \d+ new suspected memory leaks?`,
			title: "kmemleak: suspected memory leaks", end: endSingle},
		{cat: results.CatKmemleak, sev: results.SevWarning, key: "unreferenced object", header: `^unreferenced object 0x[0-9a-f]+ \(size \d+\):`,
			title: "memory leak in {frame}", end: endBody, body: `^\s|^comm "|^hex dump|^backtrace`},

		// Oopses, traps and BUG()s: reports ending with "---[ end trace".
		{cat: results.CatOops, sev: results.SevFatal, key: "NULL pointer dereference",
			header: `^BUG: (?:kernel|unable to handle kernel) NULL pointer dereference`,
			title:  "BUG: kernel NULL pointer dereference in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatOops, sev: results.SevFatal, key: "BUG: unable to handle ", header: `^BUG: unable to handle (?:page fault|kernel paging request|kernel)`,
			title: "BUG: unable to handle page fault in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatOops, sev: results.SevFatal, key: "Unable to handle kernel ",
			header: `^Unable to handle kernel (NULL pointer dereference|paging request|access to user memory|execute from non-executable memory)`,
			title:  "BUG: unable to handle kernel {1} in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatStackCorruption, sev: results.SevFatal, key: "stack guard page", header: `^BUG: stack guard page was hit`,
			title: "BUG: stack guard page was hit in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatStackCorruption, sev: results.SevFatal, key: "kernel stack overflow", header: `^kernel stack overflow \(([\w -]+)\)`,
			title: "kernel stack overflow in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatListCorruption, sev: results.SevFatal, key: "list_",
			header: `^(list_add|list_del|hlist_add|hlist_del|list_del_rcu|list_add_rcu)\w*(?: corruption| double add)`,
			title:  "{1} corruption in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatBug, sev: results.SevFatal, key: "kernel BUG at ", header: `^kernel BUG at ([^:\s]+)(?::\d+)?!?`,
			title: "kernel BUG in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatGPF, sev: results.SevFatal, key: "general protection fault",
			header: `^(?:Oops: )?general protection fault(?:, (?:probably for non-canonical address|maybe for address) 0x[0-9a-f]+)?: [0-9a-f]{4} \[#\d+\]`,
			title:  "general protection fault in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatTrap, sev: results.SevFatal, key: "PANIC: double fault", header: `^(?:traps: )?PANIC: double fault`,
			title: "double fault in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatTrap, sev: results.SevFatal, key: " [#",
			header: `^(?:Oops: )?(invalid opcode|divide error|double fault|stack segment|alignment check|invalid TSS|` +
				`segment not present|coprocessor segment overrun|bounds|overflow|int3|device not available|` +
				`x87 floating point exception|SIMD floating point exception|control protection fault): [0-9a-f]{4} \[#\d+\]`,
			title: "{1} in {frame}", end: endMarker, absorbs: oopsFamily},
		{cat: results.CatOops, sev: results.SevFatal, key: "Oops", header: `^(?:Internal error: )?Oops(?: - BUG)?: (?:[0-9a-f]+ )?\[#\d+\]`,
			title: "Oops in {frame}", end: endMarker, absorbs: oopsFamily},

		// Lockups, stalls and hangs: reports that end where the body ends.
		{cat: results.CatSoftLockup, sev: results.SevFatal, key: "soft lockup", header: `^(?:(?:NMI )?watchdog: )?BUG: soft lockup - CPU#\d+ stuck for`,
			title: "BUG: soft lockup in {frame}", end: endBody},
		{cat: results.CatHardLockup, sev: results.SevFatal, key: "hard LOCKUP",
			header: `^(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+`,
			title:  "hard LOCKUP in {frame}", end: endBody},
		{cat: results.CatRCUStall, sev: results.SevFatal, key: "detected ",
			header: `^(?:rcu: )?INFO: (rcu_\w+) (?:self-)?detected (?:expedited )?stalls?`,
			title:  "INFO: rcu detected stall in {frame}", end: endBody, body: rcuBody},
		{cat: results.CatWorkqueueLockup, sev: results.SevFatal, key: "workqueue lockup", header: `^BUG: workqueue lockup - pool`,
			title: "BUG: workqueue lockup", end: endBody, body: wqBody},
		{cat: results.CatHungTask, sev: results.SevFatal, key: " blocked for more than ",
			header: `^INFO: task \S.*:\d+ blocked for more than \d+ seconds`,
			title:  "INFO: task hung in {frame}", end: endBody, body: hungBody},

		// Lockdep: free text until "stack backtrace:", then a stack.
		{cat: results.CatLockdep, sev: results.SevError, key: "WARNING: ",
			header: `^WARNING: (possible circular locking dependency|possible recursive locking|inconsistent lock state|` +
				`suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning to user space|` +
				`possible irq lock inversion dependency|\w+-safe -> \w+-unsafe lock order|nested lock was not taken|` +
				`lock held at task exit|bad contention)`,
			title: "lockdep: {1} in {frame}", end: endBody, anyUntil: `^stack backtrace:`},
		{cat: results.CatLockdep, sev: results.SevError, key: "[ INFO: ",
			header: `^\[ INFO: (possible circular locking dependency|possible recursive locking|inconsistent lock state|` +
				`suspicious RCU usage|possible irq lock inversion dependency|\S+ lock order) detected`,
			title: "lockdep: {1} in {frame}", end: endBody, anyUntil: `^stack backtrace:`},
		{cat: results.CatLockdep, sev: results.SevError, key: "non-static key", header: `^INFO: trying to register non-static key`,
			title: "lockdep: trying to register non-static key in {frame}", end: endBody,
			body: `^The code is fine but needs lockdep annotation|^turning off the locking correctness validator`},
		{cat: results.CatLockdep, sev: results.SevWarning, key: "BUG: MAX_", header: `^BUG: (MAX_\w+) too low`,
			title: "lockdep: {1} too low", end: endBody, body: `^turning off the locking correctness validator|^Please attach`},

		{cat: results.CatSleepInAtomic, sev: results.SevError, key: "invalid context",
			header: `^BUG: sleeping function called from invalid context`,
			title:  "BUG: sleeping function called from invalid context in {frame}", end: endBody, body: atomicBody},
		{cat: results.CatSleepInAtomic, sev: results.SevError, key: "scheduling while atomic", header: `^BUG: scheduling while atomic`,
			title: "BUG: scheduling while atomic in {frame}", end: endBody, body: atomicBody},

		// Kernel WARNINGs, with their location.
		{cat: results.CatWarning, sev: results.SevWarning, key: "WARNING: ",
			header: `^WARNING: (?:CPU: \d+ (?:UID: \d+ )?PID: \d+ )?at ([^\s:]+)(?::\d+)? (\S+)`,
			title:  "WARNING in {frame} ({1})", frameGroup: 2, end: endMarker},

		// Other BUG: reports.
		{cat: results.CatBug, sev: results.SevError, key: "BUG: Bad page", header: `^BUG: Bad page (state|map|cache) in process`,
			title: "BUG: bad page {1} in {frame}", end: endBody, body: memBody + `|^page:|^flags:|^raw:|^page dumped because`},
		{cat: results.CatBug, sev: results.SevError, key: "BUG: ", header: `^BUG: (.+)`, title: "BUG: {1}", end: endBody, body: atomicBody},

		// Memory pressure.
		{cat: results.CatOOMKill, sev: results.SevError, key: " invoked oom-killer: ", header: `^\S.* invoked oom-killer: `,
			title: "{e1}: killed process {e2}", end: endMarker,
			marker:    `^(Out of memory|Memory cgroup out of memory)(?: \(oom_kill_allocating_task\))?: Kill(?:ed)? process \d+ \(([^)]*)\)`,
			absorbAll: true},
		{cat: results.CatOOMKill, sev: results.SevError, key: " process ",
			header: `^(Out of memory|Memory cgroup out of memory)(?: \(oom_kill_allocating_task\))?: Kill(?:ed)? process \d+ \(([^)]*)\)`,
			title:  "{1}: killed process {2}", end: endSingle},
		{cat: results.CatPageAllocFailure, sev: results.SevWarning, key: "page allocation failure",
			header: `^\S.*: page allocation failure: (order:\d+)`,
			title:  "page allocation failure: {1} in {frame}", end: endBody, body: memBody},

		// Networking.
		{cat: results.CatNetdevUnregister, sev: results.SevError, key: "unregister_netdevice: waiting for",
			header: `^unregister_netdevice: waiting for (\S+) to become free`,
			title:  "unregister_netdevice: waiting for {1} to become free", end: endSingle},

		// ext4 and jbd2.
		{cat: results.CatExt4Error, key: "EXT4-fs (", ignore: true,
			header: `^EXT4-fs \([^)]*\): (?:mounted filesystem|re-mounted|unmounting filesystem|recovery complete|` +
				`orphan cleanup|starting orphan|[Uu]sing encoding|mounting ext[234] file system|barriers disabled|` +
				`\d+ orphan inodes? deleted|warning: mounting unchecked fs|warning: checktime reached|` +
				`warning: maximal mount count reached|Mount option|write access (?:unavailable|will be enabled)|` +
				`INFO: recovery required|couldn't mount as ext[23]|initial error at time|last error at time|` +
				`Ignoring removed|shut down requested|Quota mode)`},
		{cat: results.CatExt4Error, sev: results.SevError, key: "EXT4-fs error ",
			header: `^EXT4-fs error \(device ([^)]*)\)(?::| in) ([\w.]+)(?::\d+)?: (?:inode #\d+: )?(?:block \d+: )?(?:comm \S+: )?(.*)`,
			title:  "EXT4-fs error in {2}: {3}", end: endSingle},
		{cat: results.CatExt4Error, sev: results.SevError, key: "EXT4-fs (", header: `^EXT4-fs \([^)]*\): [Rr]emounting filesystem read-only`,
			title: "EXT4-fs: remounting filesystem read-only", end: endSingle},
		{cat: results.CatExt4Error, sev: results.SevWarning, key: "EXT4-fs (", header: `^EXT4-fs \([^)]*\): (warning: mounting fs with errors|error count since last fsck)`,
			title: "EXT4-fs: {1}", end: endSingle},
		{cat: results.CatExt4Error, sev: results.SevWarning, key: "EXT4-fs warning ",
			header: `^EXT4-fs warning \(device ([^)]*)\): ([\w.]+)(?::\d+)?: (?:inode #\d+: )?(?:comm \S+: )?(.*)`,
			title:  "EXT4-fs warning in {2}: {3}", end: endSingle},
		{cat: results.CatExt4Error, sev: results.SevError, key: "EXT4-fs (",
			header: `^EXT4-fs \([^)]*\): (.*(?i:corrupt|error|fail|invalid|bad |can't|unable|should not happen|checksum).*)`,
			title:  "EXT4-fs: {1}", end: endSingle},
		{cat: results.CatJBD2Abort, sev: results.SevError, key: "Aborting journal", header: `^Aborting journal on device (\S+)`,
			title: "JBD2: aborting journal", end: endSingle},
		{cat: results.CatJBD2Abort, sev: results.SevError, key: "JBD2: ",
			header: `^JBD2: (.*(?i:error|abort|checksum|corrupt|fail|bad ).*)`, title: "JBD2: {1}", end: endSingle},

		// XFS: a header line, often followed by more XFS lines, a hex dump and a stack.
		{cat: results.CatXFSError, key: "XFS (", ignore: true,
			header: `^XFS \([^)]*\): (?:Mounting V\d|Ending clean mount|Unmounting Filesystem|Starting recovery|` +
				`Ending recovery|Quotacheck|Deprecated V4 format|DAX|EXPERIMENTAL|Mounting V4 Filesystem|` +
				`Ending clean|reflink|online)`},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (", header: `^XFS \([^)]*\): Metadata CRC error detected at ([^\s,]+)`,
			title: "XFS: metadata CRC error in {frame}", frameGroup: 1, end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (", header: `^XFS \([^)]*\): Metadata corruption detected at ([^\s,]+)`,
			title: "XFS: metadata corruption in {frame}", frameGroup: 1, end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (", header: `^XFS \([^)]*\): metadata I/O error in "([^"\s]+)`,
			title: "XFS: metadata I/O error in {frame}", frameGroup: 1, end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (",
			header: `^XFS \([^)]*\): Corruption of in-memory data (?:\(0x[0-9a-f]+\) )?detected(?: at (\S+))?`,
			title:  "XFS: corruption of in-memory data in {frame}", frameGroup: 1, end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (", header: `^XFS \([^)]*\): Internal error (\S+) at line \d+ of file \S+\s+Caller (\S+)`,
			title: "XFS: internal error {1} in {frame}", frameGroup: 2, end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},
		{cat: results.CatXFSError, sev: results.SevError, key: "XFS (",
			header: `^XFS \([^)]*\): (.*(?i:corrupt|error|shut down|shutdown|fail|invalid).*)`,
			title:  "XFS: {1}", end: endBody, body: xfsBody, absorbs: []results.Category{results.CatXFSError}},

		// Btrfs.
		{cat: results.CatBtrfsError, sev: results.SevError, key: "BTRFS",
			header: `^BTRFS (?:warning|error|critical) \(device [^)]*\): (csum failed|checksum verify failed|` +
				`parent transid verify failed|corrupt leaf|corrupt node|bad tree block start|tree block \w+ mismatch|` +
				`level verify failed|bdev \S+ errs|unable to fixup \(regular\) error|read error corrected)`,
			title: "BTRFS: {1}", end: endSingle},
		{cat: results.CatBtrfsError, sev: results.SevError, key: "BTRFS: error ",
			header: `^BTRFS: error \(device [^)]*\) in ([\w.]+)(?::\d+)?: (errno=-?\d+ [^(]*)`,
			title:  "BTRFS: error in {1}: {2}", end: endSingle},
		{cat: results.CatBtrfsError, sev: results.SevError, key: "BTRFS", header: `^BTRFS (?:error|critical) \(device [^)]*\): (.*)`,
			title: "BTRFS: {1}", end: endSingle},
		{cat: results.CatBtrfsError, sev: results.SevError, key: "BTRFS", header: `^BTRFS info \(device [^)]*\): (forced readonly)`,
			title: "BTRFS: {1}", end: endSingle},
		{cat: results.CatBtrfsError, sev: results.SevWarning, key: "BTRFS", header: `^BTRFS warning \(device [^)]*\): (.*)`,
			title: "BTRFS: {1}", end: endSingle},

		// overlayfs and aufs (docker's storage drivers).
		{cat: results.CatOverlayfsError, key: "overlay", ignore: true,
			header: `^overlay(?:fs)?: .*(?:falling back|idmapped layers are currently not supported|` +
				`does not support file handles|upper fs does not support|NFS export requires|null uuid detected)`},
		{cat: results.CatOverlayfsError, sev: results.SevWarning, key: "overlay", header: `^overlay(?:fs)?: (.*(?:is in-use as|undefined behavior).*)`,
			title: "overlayfs: {1}", end: endSingle},
		{cat: results.CatOverlayfsError, sev: results.SevError, key: "overlay",
			header: `^overlay(?:fs)?: (.*(?i:fail|error|corrupt|must reside|not supported as upperdir|needs to support d_type|` +
				`stacking depth|conflicting|cannot|invalid|missing|in-use|wrong|stale).*)`,
			title: "overlayfs: {1}", end: endSingle},
		{cat: results.CatAufsError, key: "aufs ", ignore: true, header: `^aufs [\w.]+:\d+:\S*: (?:dirperm1 breaks|uid/gid/perm)`},
		{cat: results.CatAufsError, sev: results.SevError, key: "aufs ",
			header: `^aufs ([\w.]+):\d+:\S*: (.*(?i:error|fail|corrupt|I/O|cannot|invalid|broken|stale).*)`,
			title:  "aufs: {2} in {1}", end: endSingle},
		{cat: results.CatAufsError, sev: results.SevWarning, key: "aufs ", header: `^aufs ([\w.]+):\d+:\S*: (.*)`,
			title: "aufs: {2} in {1}", end: endSingle},

		// Block I/O. QEMU's empty floppy and CD-ROM drives fail reads at boot: not the disk under test.
		{cat: results.CatIOError, sev: results.SevWarning, key: " error, dev ",
			header: `^(?:blk_update_request: |print_req_error: |end_request: )?(?:critical )?[\w /]*? error, dev ((?:fd|sr)\d+),? sector`,
			title:  "I/O error on removable dev {1}", end: endSingle},
		{cat: results.CatIOError, sev: results.SevWarning, key: "Buffer I/O error", header: `^Buffer I/O error on dev(?:ice)? ((?:fd|sr)\d+),`,
			title: "Buffer I/O error on removable dev {1}", end: endSingle},
		{cat: results.CatIOError, sev: results.SevError, key: " error, dev ",
			header: `^(?:blk_update_request: |print_req_error: |end_request: )?((?:critical )?[\w /]*?) error, dev ([^,\s]+),? sector \d+(?: op 0x[0-9a-f]+:\((\w+)\))?`,
			title:  "{1} error on dev {2} ({3})", end: endSingle},
		{cat: results.CatIOError, sev: results.SevError, key: "Buffer I/O error", header: `^Buffer I/O error on dev(?:ice)? ([^,\s]+), logical block \d+(?:, (.*))?`,
			title: "Buffer I/O error on dev {1} {2}", end: endSingle},
		{cat: results.CatIOError, sev: results.SevError, key: "lost page write", header: `^lost page write due to I/O error on (\S+)`,
			title: "lost page write due to I/O error on {1}", end: endSingle},
		{cat: results.CatIOError, sev: results.SevError, key: "device-mapper: ",
			header: `^device-mapper: (\w+): (.*(?i:error|fail|out-of-data-space|out of data space|read-only).*)`,
			title:  "device-mapper: {1}: {2}", end: endSingle},

		// Hardware.
		{cat: results.CatMachineCheck, sev: results.SevWarning, key: "Hardware Error", header: `^(?:mce: )?\[Hardware Error\]: Machine check events logged`,
			title: "machine check events logged", end: endSingle},
		{cat: results.CatMachineCheck, sev: results.SevFatal, key: "Hardware Error",
			header: `^(?:mce: )?\[Hardware Error\]: (?:CPU \d+: )?Machine Check(?: Exception)?:`,
			title:  "machine check exception", end: endBody, body: mceBody},
		{cat: results.CatMachineCheck, sev: results.SevError, key: "Hardware Error", header: `^(?:\{\d+\})?\[Hardware Error\]: (.*)`,
			title: "hardware error: {1}", end: endBody, body: mceBody},
		{cat: results.CatMachineCheck, sev: results.SevError, key: "EDAC ", header: `^EDAC \S+: \d+ UE (.*)`,
			title: "EDAC uncorrected memory error", end: endSingle},
		{cat: results.CatMachineCheck, sev: results.SevWarning, key: "EDAC ", header: `^EDAC \S+: \d+ CE (.*)`,
			title: "EDAC corrected memory error", end: endSingle},
	}
}

// compiledRule is a rule with its regexps compiled.
type compiledRule struct {
	rule
	keyIdx   int // index into table.keys
	header   *regexp.Regexp
	marker   *regexp.Regexp
	anyUntil *regexp.Regexp
	body     *regexp.Regexp
}

// table is the compiled signature table; it is immutable once built.
type table struct {
	rules       []compiledRule
	keys        [][]byte       // distinct rule keys
	body        *regexp.Regexp // generic report-body lines
	panicEnd    *regexp.Regexp
	consequence *regexp.Regexp
	frames      frameParser
	norm        *normalizer
	placeholder *regexp.Regexp // {1}, {e1}, {frame} in title formats
}

// genericBody matches lines that belong to any open report: indented lines
// (stack frames, register continuations), register dumps, trace markers.
const genericBody = `^\s|^Call [Tt]race:|^(?:RIP|EIP|pc |lr |sp ): ?|^x\d+ ?:|^[A-Z][A-Z0-9]{1,3}:\s+[0-9a-f]{4}|^Code: |` +
	`^CPU: \d+ |^Hardware name: |^Workqueue: |^Modules linked in:|^Tainted: |Not tainted|^---\[ end trace|` +
	`^</?(?:TASK|IRQ|NMI|SOFTIRQ)>|^\? \S+\+0x|^\S+\+0x[0-9a-f]+/0x[0-9a-f]+|^\[<[0-9a-f]+>\]|^Kernel Offset:|` +
	`^Sending NMI from CPU|^NMI backtrace for cpu|^irq event stamp|^hardirqs last|^softirqs last|` +
	`^\d+ locks? held by|^no locks held by|^Showing all locks held|^Mem-Info:|^PGD |^P4D |^#PF: |` +
	`^Oops: |^Dumping ftrace buffer|^Disabling lock debugging|^CR2: |^=+$|^Call trace:|^Stack:|^Backtrace:`

// compiled builds the table once per process; the result is never mutated.
var compiled = sync.OnceValue(func() *table {
	rs := rules()
	t := &table{
		rules:       make([]compiledRule, len(rs)),
		body:        regexp.MustCompile(genericBody),
		panicEnd:    regexp.MustCompile(endPanic),
		consequence: regexp.MustCompile(panicConsequence),
		frames:      newFrameParser(),
		norm:        newNormalizer(),
		placeholder: regexp.MustCompile(`\{(e?)(\d|frame)\}`),
	}
	for i, r := range rs {
		c := compiledRule{rule: r, keyIdx: -1, header: regexp.MustCompile(r.header)}
		for k, key := range t.keys {
			if string(key) == r.key {
				c.keyIdx = k
			}
		}
		if c.keyIdx < 0 {
			c.keyIdx = len(t.keys)
			t.keys = append(t.keys, []byte(r.key))
		}
		if r.end == endMarker {
			m := r.marker
			if m == "" {
				m = endTrace
			}
			c.marker = regexp.MustCompile(m)
		}
		if r.anyUntil != "" {
			c.anyUntil = regexp.MustCompile(r.anyUntil)
		}
		if r.body != "" {
			c.body = regexp.MustCompile(r.body)
		}
		t.rules[i] = c
	}
	return t
})

func (c *compiledRule) absorbsCat(cat results.Category) bool {
	if cat == c.cat {
		return true
	}
	for _, a := range c.absorbs {
		if a == cat {
			return true
		}
	}
	return false
}

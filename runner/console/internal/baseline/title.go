package baseline

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTitle bounds a title's length in bytes.
const maxTitle = 200

// frameParser finds function names in report lines and tells generic frames
// (locking, allocation, printk, dump and panic helpers, sanitizer runtime)
// from the guilty one.
type frameParser struct {
	rip     *regexp.Regexp // RIP: 0010:func+0x1/0x2, pc : func+0x1/0x2
	frame   *regexp.Regexp // " func+0x1/0x2 [mod]" and "[<addr>] func+0x1/0x2"
	generic *regexp.Regexp
	suffix  *regexp.Regexp
	funcOff *regexp.Regexp
}

// genericFrames are never the culprit: the machinery that reports a problem,
// waits, locks or allocates. Anchored at both ends, matched after suffixes
// like .cold or .isra.0 are stripped.
const genericFrames = `^(?:` +
	`dump_stack\w*|__dump_stack|show_stack\w*|show_regs|show_trace_log_lvl|__show_regs|` +
	`panic|nmi_panic|__warn|warn_slowpath\w*|__warn_printk|report_bug|handle_bug|fixup_bug|do_error_trap|do_trap|` +
	`die|__die\w*|bad_page|oops_\w+|exc_\w+|asm_exc_\w+|do_invalid_op|invalid_op|do_general_protection|` +
	`page_fault_oops|kernelmode_fixup_or_oops|__bad_area_nosemaphore|bad_area\w*|no_context|do_user_addr_fault|` +
	`handle_page_fault|do_page_fault|__do_page_fault|asm_\w+|error_entry|` +
	`\w*printk\w*|vprintk\w*|console_\w+|print_\w+|` +
	`__might_sleep|__might_resched|___might_sleep|might_sleep|__might_fault|might_fault|` +
	`lock_acquire\w*|lock_release|lock_acquired|lock_contended|lock_is_held\w*|__lock_acquire|lockdep_\w+|__lockdep_\w+|` +
	`validate_chain|check_prev_add|check_prevs_add|check_noncircular|check_deadlock|check_irq_usage|check_usage\w*|` +
	`mark_lock\w*|debug_check_\w+|debug_lockdep_\w+|` +
	`_raw_\w+|__raw_\w+|do_raw_\w+|queued_\w+|native_queued_\w+|__pv_queued_\w+|` +
	`spin_\w+|_spin_\w+|read_lock\w*|write_lock\w*|read_unlock\w*|write_unlock\w*|` +
	`mutex_\w+|__mutex_\w+|rt_mutex\w*|__rt_mutex\w*|rt_spin\w*|rwsem_\w+|__rwsem_\w+|` +
	`down|down_\w+|__down\w*|up|up_\w+|__up\w*|percpu_down\w*|__percpu_down\w*|percpu_up\w*|percpu_rwsem_\w+|` +
	`__percpu_rwsem\w*|rcu_sync\w*|` +
	`schedule\w*|__schedule|preempt_schedule\w*|io_schedule\w*|__cond_resched|_cond_resched|` +
	`wait_for_completion\w*|__wait_for_common|wait_for_common\w*|do_wait_for_common|` +
	`bit_wait\w*|__wait_on_bit\w*|out_of_line_wait_on_bit\w*|wait_on_page_bit\w*|folio_wait_bit\w*|` +
	`__folio_lock\w*|__lock_page\w*|wait_on_buffer|__wait_on_buffer|` +
	`kmalloc\w*|__kmalloc\w*|kmem_cache_\w+|kzalloc\w*|kvmalloc\w*|__kvmalloc\w*|kvzalloc\w*|krealloc\w*|` +
	`kfree\w*|slab_\w+|__slab_\w+|___slab_\w+|new_slab|allocate_slab|alloc_slab\w*|` +
	`alloc_pages\w*|__alloc_pages\w*|__get_free_pages|get_free_pages|warn_alloc\w*|` +
	`vmalloc\w*|__vmalloc\w*|vzalloc|` +
	`kasan_\w+|__kasan_\w+|__asan_\w+|check_memory_region\w*|check_region_inline|` +
	`kfence_\w+|__kfence_\w+|ubsan_\w+|__ubsan_\w+|kmsan_\w+|__msan_\w+|` +
	`memcpy\w*|__memcpy\w*|memset\w*|__memset\w*|memmove\w*|__memmove\w*|memcmp|` +
	`__list_\w+_valid\w*|list_\w+_valid\w*|__list_add|__list_del\w*|list_add\w*|list_del\w*|` +
	`rcu_\w+|__rcu_\w+|update_process_times|tick_\w+|hrtimer_\w+|__hrtimer_\w+|` +
	`__sysvec_\w+|sysvec_\w+|irq_exit\w*|__irq_exit\w*|do_softirq\w*|__do_softirq|handle_softirqs|` +
	`irqentry_\w+|smp_apic_timer_interrupt|apic_timer_interrupt|` +
	`watchdog_\w+|softlockup_fn|arch_trigger_cpumask_backtrace|trigger_\w*backtrace|nmi_cpu_backtrace\w*|` +
	`nmi_trigger_cpumask_backtrace|nmi_handle|default_do_nmi|exc_nmi|perf_event_nmi_handler|` +
	`x86_pmu_handle_irq|perf_\w+overflow\w*|__perf_event_overflow|` +
	`check_cpu_stall|rcu_pending|` +
	`debug_smp_processor_id|check_preemption_disabled|` +
	`bug_handler|__bug|__stack_chk_fail|` +
	`entry_SYSCALL\w*|do_syscall_\w+|syscall_exit\w*|ret_from_fork\w*|kthread|worker_thread|process_one_work|` +
	`el0\w*|el1\w*)$`

func newFrameParser() frameParser {
	return frameParser{
		rip:     regexp.MustCompile(`^(?:RIP: [0-9a-f]{4}:|EIP: (?:[0-9a-f]{4}:)?|pc : |PC is at )(?:\[<[0-9a-f]+>\] )?([A-Za-z_][\w.]*)\+0x`),
		frame:   regexp.MustCompile(`^\s+(?:\[<[0-9a-f]+>\] )?(\? )?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+`),
		generic: regexp.MustCompile(genericFrames),
		suffix:  regexp.MustCompile(`\.(?:cold|isra|constprop|part|llvm|lto_priv|localalias)(?:\.\d+)*`),
		funcOff: regexp.MustCompile(`^([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?)?(?: \[\w+\])?$`),
	}
}

// funcName cleans "func.isra.0+0x1/0x2" to "func"; "" if s is not a function.
func (p *frameParser) funcName(s string) string {
	s = strings.Trim(s, `"',;()`)
	m := p.funcOff.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return p.suffix.ReplaceAllString(m[1], "")
}

func (p *frameParser) isGeneric(fn string) bool { return p.generic.MatchString(fn) }

// Title normalisation.

func titleRules() []struct{ re, repl string } {
	return []struct{ re, repl string }{
		// func+0x1/0x2 [mod] → func
		{`\b([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[\w+\])?`, "$1"},
		// file.c:123:45 → file.c
		{`(\.(?:c|h|rs|S)):\d+(?::\d+)?`, "$1"},
		// quoted absolute paths differ per run (docker layer ids)
		{`'/[^']*'`, "'PATH'"},
		{`"/[^"]*"`, `"PATH"`},
		// block devices: partitions and minor numbers
		{`\b((?:[sv]d|xvd|hd)[a-z]+)\d+\b`, "$1"},
		{`\b(loop|dm-|nbd|md|zram|ram|sr|fd|nvme)\d+(?:n\d+)?(?:p\d+)?\b`, "${1}N"},
		{`\b(veth|cali|tap|tun|docker|br-)[0-9a-f]{4,}\b`, "${1}X"},
	}
}

// normalizer rewrites free text into a dedup-stable title fragment.
type normalizer struct {
	rules []*regexp.Regexp
	repls []string
	hex   *regexp.Regexp
	dec   *regexp.Regexp
	space *regexp.Regexp
}

func newNormalizer() *normalizer {
	n := &normalizer{
		hex:   regexp.MustCompile(`\b(?:0x)?[0-9a-fA-F]{8,}\b|\b0x[0-9a-fA-F]+\b`),
		dec:   regexp.MustCompile(`((?i:errno=|error |exitcode=|order:)-?)?\b\d+\b`),
		space: regexp.MustCompile(`\s+`),
	}
	for _, r := range titleRules() {
		n.rules = append(n.rules, regexp.MustCompile(r.re))
		n.repls = append(n.repls, r.repl)
	}
	return n
}

// normalize makes s printable, drops addresses, numbers, offsets and line
// numbers, and collapses whitespace.
func (n *normalizer) normalize(s string) string {
	s = printable(s)
	for i, re := range n.rules {
		s = re.ReplaceAllString(s, n.repls[i])
	}
	s = n.hex.ReplaceAllStringFunc(s, func(h string) string {
		digits := strings.TrimLeft(strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X"), "0")
		if len(digits) >= 5 || !strings.HasPrefix(h, "0x") && !strings.HasPrefix(h, "0X") {
			return "ADDR"
		}
		return h
	})
	s = n.dec.ReplaceAllStringFunc(s, func(d string) string {
		m := n.dec.FindStringSubmatch(d)
		if m[1] != "" {
			return d
		}
		return "N"
	})
	s = strings.TrimSpace(n.space.ReplaceAllString(s, " "))
	return truncateUTF8(s, maxTitle)
}

// printable replaces invalid UTF-8 and drops control characters.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

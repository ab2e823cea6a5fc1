// Package faults is matrixctl's fault-injection suite: real failures made
// inside real guests (a sysrq panic, a SIGSTOPped VM, a killed dockerd, a
// frozen filesystem under a writer, ...) run as the faulted cells of one
// matrix run through the whole pipeline, and the verdict and evidence of
// each are checked against what the taxonomy promises. A clean cell runs
// beside them, and the clean soak of the example matrix after them, as the
// false-positive check.
//
// The faults themselves are injected by the runner (runner/faults.go,
// Settings.Faults of a cell); this package holds only the suite
// (TestIntegrationFaults and TestIntegrationSoakExample, make test-faults;
// make soak for the long soak).
package faults

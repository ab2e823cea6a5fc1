// Package reports turns a results directory (results.json plus per-run
// artifacts, see results) into a ranked compatibility report: a
// self-contained HTML page for ops, versioned JSON, JUnit XML for CI and a
// Markdown summary for chat or a PR comment. It also merges the results of
// shards run on different machines (Merge).
//
// The scoring method is documented in score.go and repeated in every report
// (Method). Everything read from a results directory is untrusted data:
// console lines, probe errors and checker output are rendered as inert,
// bounded text (see sanitize.go), never as markup.
//
// Errors: Load and Merge return errors that name the file (and the JSON
// offset or run index) at fault; Build never fails on odd results, it
// classifies them.
package reports

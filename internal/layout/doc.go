// Package layout holds no code: its test checks the module's import
// boundaries (README, "How it works": the layout table) against what the
// packages really import, outside their tests.
package layout

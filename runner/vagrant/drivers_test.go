package vagrant

import (
	"regexp"
	"slices"
	"testing"

	"github.com/matrixctl/matrixctl/internal/drivers"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/vagrant"
)

// TestProvisionScriptAgreesWithDriverTable keeps vagrant/provision.sh in
// step with the storage-driver table: the script makes every scratch
// filesystem the planner offers, and every filesystem a driver this
// provider accepts can run on.
func TestProvisionScriptAgreesWithDriverTable(t *testing.T) {
	var made []string
	for _, m := range regexp.MustCompile(`(?m)^(\w+)\) mkfs\.`).FindAllSubmatch(vagrant.ProvisionScript, -1) {
		made = append(made, string(m[1]))
	}
	if want := matrix.ScratchFilesystems(); !slices.Equal(made, want) {
		t.Errorf("provision.sh makes scratch filesystems %v, the planner offers %v", made, want)
	}
	accepted := 0
	for _, d := range drivers.All() {
		if !provisions(d.Name) {
			continue
		}
		accepted++
		for _, fs := range d.ScratchAllowed {
			if !slices.Contains(made, fs) {
				t.Errorf("the provider accepts %s, which runs on %s, but provision.sh cannot make %s", d.Name, fs, fs)
			}
		}
	}
	if accepted == 0 {
		t.Error("the provider accepts no storage driver")
	}
}

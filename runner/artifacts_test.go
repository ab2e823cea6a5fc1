package runner

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestExistingArtifacts(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "vagrant"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"console.log", "vagrant/Vagrantfile"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := ExistingArtifacts(dir, map[string]string{
		"console": "console.log", "vagrantfile": "vagrant/Vagrantfile", "agent": "agent.log",
	})
	want := map[string]string{"console": "console.log", "vagrantfile": "vagrant/Vagrantfile"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExistingArtifacts = %v, want %v", got, want)
	}
}

package qemu

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

// hostEvidence takes init and cmdline from the agent and the rest from
// docker info / version, as a Debian 12 guest's dockerd answers them.
func TestHostEvidence(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Api-Version", "1.41")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/info"):
			w.Write([]byte(`{"CgroupVersion":"2","CgroupDriver":"systemd","SecurityOptions":["name=apparmor","name=seccomp,profile=default","name=cgroupns"],
				"RuncCommit":{"ID":"1.1.5+ds1-1"},"ContainerdCommit":{"ID":"1.6.20~ds1-1"}}`))
		case strings.HasSuffix(r.URL.Path, "/version"):
			w.Write([]byte(`{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"},
				{"Name":"containerd","Version":"1.6.20~ds1"},{"Name":"runc","Version":"1.1.5+ds1"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	h := results.Host{InitMode: "systemd", CgroupMode: "distro"}
	r := Ready{DockerHost: "tcp://" + strings.TrimPrefix(srv.URL, "http://"), Init: "systemd 252 (252.39-1~deb12u2)", Cmdline: "panic=-1 net.ifnames=0"}
	if err := hostEvidence(context.Background(), r, &h); err != nil {
		t.Fatal(err)
	}
	want := results.Host{InitMode: "systemd", CgroupMode: "distro", Init: "systemd 252 (252.39-1~deb12u2)",
		CgroupVersion: "2", CgroupDriver: "systemd", SecurityOptions: []string{"name=apparmor", "name=seccomp,profile=default", "name=cgroupns"},
		RuncVersion: "1.1.5+ds1", ContainerdVersion: "1.6.20~ds1", KernelCmdline: "panic=-1 net.ifnames=0"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("host evidence\n got %+v\nwant %+v", h, want)
	}
}

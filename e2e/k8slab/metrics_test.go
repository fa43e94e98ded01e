package k8slab

import "testing"

func TestHasSample(t *testing.T) {
	m := `rds_csi_controller_state{controller="nvme0",state="connecting",subsysnqn="nqn.x",traddr="127.0.0.1",trsvcid="4430"} 1
rds_csi_controller_state{controller="nvme0",state="live",subsysnqn="nqn.x",traddr="127.0.0.1",trsvcid="4430"} 0
rds_csi_controller_orphaned_seconds{controller="nvme0",subsysnqn="nqn.x",traddr="127.0.0.1",trsvcid="4430"} 0
`
	for _, tc := range []struct {
		label, v string
		want     bool
	}{
		{`state="live"`, "0", true},
		{`state="live"`, "1", false},
		{`state="connecting"`, "1", true},
		{"rds_csi_controller_orphaned_seconds{", "0", true},
		{"rds_csi_controller_orphaned_seconds{", "10", false},
		{`state="deleting"`, "0", false},
	} {
		if got := hasSample(m, tc.label, tc.v); got != tc.want {
			t.Errorf("hasSample(%s, %s) = %v, want %v", tc.label, tc.v, got, tc.want)
		}
	}
}

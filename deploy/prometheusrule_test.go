package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate kubernetes/monitoring/prometheusrule.yaml from monitoring/alerts.yaml")

const (
	alertsFile = "monitoring/alerts.yaml" // the plain Prometheus rules file
	ruleFile   = monitoringDir + "/prometheusrule.yaml"
	ruleHeader = `# Generated from deploy/monitoring/alerts.yaml by
#   go test ./deploy -run TestPrometheusRule -update
# Do not edit: change alerts.yaml and regenerate. (deploy/kubernetes_test.go
# fails when the two differ.)
`
)

// The PrometheusRule carries exactly the groups of the plain rules file.
func TestPrometheusRule(t *testing.T) {
	rule := only[*prometheusRule](t, loadFile(t, ruleFile)) // strict: known rule fields only

	data, err := os.ReadFile(alertsFile)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("deploy/%s does not exist yet: cannot compare %s with it (run again once it does; -update then regenerates %s)", alertsFile, ruleFile, ruleFile)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The rules file itself parses strictly: only "groups" at the top.
	var typed struct {
		Groups []ruleGroup `json:"groups"`
	}
	if err := decodeStrict(data, &typed); err != nil {
		t.Fatalf("deploy/%s: %v", alertsFile, err)
	}
	want := genericGroups(t, data, func(m map[string]any) any { return m["groups"] })

	if *update {
		writeRule(t, want)
		rule = only[*prometheusRule](t, loadFile(t, ruleFile))
	}
	ruleData, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	got := genericGroups(t, ruleData, func(m map[string]any) any {
		spec, _ := m["spec"].(map[string]any)
		return spec["groups"]
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s spec.groups differ from deploy/%s (-alerts.yaml +prometheusrule.yaml):\n%s\nregenerate with: go test ./deploy -run TestPrometheusRule -update", ruleFile, alertsFile, diff)
	}
	if len(rule.Spec.Groups) == 0 {
		t.Errorf("%s has no rule groups", ruleFile)
	}
}

// genericGroups decodes a YAML document and returns pick's part of it as
// plain JSON values, for comparing without caring about Go types.
func genericGroups(t *testing.T, data []byte, pick func(map[string]any) any) any {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	g := pick(m)
	if g == nil {
		return []any{}
	}
	return g
}

// writeRule regenerates the PrometheusRule around groups, keeping its
// metadata.
func writeRule(t *testing.T, groups any) {
	t.Helper()
	old, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSONStrict(old)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	m["spec"] = map[string]any{"groups": groups}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString(ruleHeader)
	buf.Write(out)
	if err := os.WriteFile(filepath.Clean(ruleFile), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", ruleFile)
}

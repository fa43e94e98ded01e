package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// monitoringDir holds the alert rules, their tests and the dashboard.
var monitoringDir = filepath.Join("..", "deploy", "monitoring")

// metricToken finds rds_csi_ identifiers in PromQL or text: a metric name
// not preceded by an identifier character.
var metricToken = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:])(rds_csi_[a-zA-Z0-9_:]*)`)

func metricTokens(s string) []string {
	var out []string
	for _, m := range metricToken.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// exported describes what the exporter really exposes: the series names
// PromQL can select (histograms as _bucket, _sum, _count) with their label
// names, and the family each series name belongs to.
type exported struct {
	series map[string][]string // series name -> label names, sorted
	family map[string]string   // series name -> family name
}

func gatherExported(t *testing.T) exported {
	t.Helper()
	mfs, err := populatedRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	// and the controller's (--mode=controller) families
	cmfs, err := populatedRouterOSRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	mfs = append(mfs, cmfs...)
	e := exported{series: map[string][]string{}, family: map[string]string{}}
	for _, mf := range mfs {
		name := mf.GetName()
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		add := func(series string, extra ...string) {
			var ls []string
			for l := range labels {
				ls = append(ls, l)
			}
			ls = append(ls, extra...)
			sort.Strings(ls)
			e.series[series] = ls
			e.family[series] = name
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(name+"_bucket", "le")
			add(name + "_sum")
			add(name + "_count")
		case dto.MetricType_SUMMARY:
			add(name, "quantile")
			add(name + "_sum")
			add(name + "_count")
		default:
			add(name)
		}
	}
	return e
}

// families returns every family name the exporter exposes.
func (e exported) families() []string {
	seen := map[string]bool{}
	for _, f := range e.family {
		seen[f] = true
	}
	var out []string
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// isName reports whether tok names a family or a series (for prose: a
// histogram may be named by its family).
func (e exported) isName(tok string) bool {
	if _, ok := e.series[tok]; ok {
		return true
	}
	return slices.Contains(e.families(), tok)
}

// checkExprs checks that every rds_csi_ name in exprs is a series the
// exporter exposes, and returns the families the exprs use.
func (e exported) checkExprs(t *testing.T, where string, exprs []string) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, expr := range exprs {
		for _, tok := range metricTokens(expr) {
			fam, ok := e.family[tok]
			if !ok {
				t.Errorf("%s: %s is not a series the exporter exposes, in:\n%s", where, tok, expr)
				continue
			}
			used[fam] = true
		}
	}
	return used
}

// rulesFile is the part of a Prometheus rules file the test reads.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleTests is the part of a promtool test file the test reads.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// alertExprs returns each alert's expression by name, after checking the
// shape every alert must have.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	var rf rulesFile
	readYAML(t, "alerts.yaml", &rf)
	out := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert name (record %q)", g.Name, r.Record)
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			out[r.Alert] = r.Expr
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, sev)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if !strings.HasPrefix(r.Alert, "RdsCsi") {
				t.Errorf("alert %s: name should start with RdsCsi", r.Alert)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("alerts.yaml has no alerts")
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets and template variable queries, after checking its shape.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr       string `json:"expr"`
				RefID      string `json:"refId"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard.json: no uid or title")
	}
	var exprs []string
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Errorf("variable %s: query is neither an object nor a string", v.Name)
			}
			q.Query = s
		}
		exprs = append(exprs, q.Query)
	}
	ids := map[int]string{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x=%d w=%d outside the 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is not the $datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %s twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: empty expr", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

// TestMonitoringNames checks the alert rules and the dashboard against what
// the exporter really exposes: every rds_csi_ name they query exists, and
// every family the exporter exposes is used by one of them.
func TestMonitoringNames(t *testing.T) {
	e := gatherExported(t)
	used := map[string]bool{}

	alerts := alertExprs(t)
	for name, expr := range alerts {
		if len(metricTokens(expr)) == 0 {
			t.Errorf("alert %s uses no rds_csi_ metric: %s", name, expr)
		}
		for f := range e.checkExprs(t, "alert "+name, []string{expr}) {
			used[f] = true
		}
	}
	for f := range e.checkExprs(t, "dashboard.json", dashboardExprs(t)) {
		used[f] = true
	}

	// Prose (annotations, descriptions) may name families too; they must exist.
	for _, file := range []string{"alerts.yaml", "dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(monitoringDir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range metricTokens(string(b)) {
			// In prose a colon ends a sentence part, and "rds_csi_" alone
			// is the prefix.
			tok = strings.TrimRight(tok, ":")
			if tok != "rds_csi_" && !e.isName(tok) {
				t.Errorf("%s mentions %s, which the exporter does not expose", file, tok)
			}
		}
	}

	for _, f := range e.families() {
		if !used[f] {
			t.Errorf("%s is exposed but used by neither the dashboard nor the alerts", f)
		}
	}
}

// seriesSelector is an input series of a promtool test: name{labels}.
var seriesSelector = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$`)
var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*=`)

// targetLabels are added by Prometheus at scrape time.
var targetLabels = map[string]bool{"job": true, "instance": true}

// TestAlertTestsMatchExporter checks that the promtool tests feed the rules
// series the exporter really exposes (name and label names), and that every
// alert has a firing and a not-firing case.
func TestAlertTestsMatchExporter(t *testing.T) {
	e := gatherExported(t)
	var rt ruleTests
	readYAML(t, "alerts_test.yaml", &rt)
	if !slices.Contains(rt.RuleFiles, "alerts.yaml") {
		t.Errorf("alerts_test.yaml does not load alerts.yaml: %v", rt.RuleFiles)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, in := range tc.InputSeries {
			m := seriesSelector.FindStringSubmatch(strings.TrimSpace(in.Series))
			if m == nil {
				t.Errorf("test %q: cannot parse series %q", tc.Name, in.Series)
				continue
			}
			want, ok := e.series[m[1]]
			if !ok {
				t.Errorf("test %q: %s is not a series the exporter exposes", tc.Name, m[1])
				continue
			}
			var got []string
			for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
				if !targetLabels[l[1]] {
					got = append(got, l[1])
				}
			}
			sort.Strings(got)
			if !slices.Equal(want, got) {
				t.Errorf("test %q: %s has labels %v, the exporter's have %v", tc.Name, m[1], got, want)
			}
		}
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				firing[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	for name := range alertExprs(t) {
		if !firing[name] || !quiet[name] {
			t.Errorf("alert %s: firing case %v, not-firing case %v; want both", name, firing[name], quiet[name])
		}
	}
}

func TestMetricTokens(t *testing.T) {
	got := metricTokens(`sum by (x) (rate(rds_csi_a_total{y="rds_csi"}[5m])) / rds_csi_b_bucket and foo_rds_csi_c, rds_csi_d`)
	want := []string{"rds_csi_a_total", "rds_csi_b_bucket", "rds_csi_d"}
	if !slices.Equal(want, got) {
		t.Errorf("metricTokens = %v, want %v", got, want)
	}
}

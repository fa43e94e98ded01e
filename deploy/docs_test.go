package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// execRecipe is a documented `kubectl exec ... -c rds-csi -- <program> ...`.
var execRecipe = regexp.MustCompile("kubectl exec [^`\n]*-c rds-csi -- ([^ `\n]+)")

// TestDocsExecRecipesRunTheBinary: every recipe that runs a program in the
// plugin's container runs rds-csi itself. The runtime image is Debian slim
// with a few packages (TestRuntimeImagePackages); a recipe that needs
// another program (it once said `kill -USR1 1`, and the image has no kill
// binary) fails on a real node.
func TestDocsExecRecipesRunTheBinary(t *testing.T) {
	n := 0
	for _, doc := range []string{"../README.md", "README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range execRecipe.FindAllStringSubmatch(string(data), -1) {
			n++
			if prog := m[1]; prog != "rds-csi" {
				t.Errorf("%s: %q runs %s, which the image does not ship; add a subcommand to rds-csi instead", doc, strings.TrimSpace(m[0]), prog)
			}
		}
	}
	if n == 0 {
		t.Error("no `kubectl exec ... -c rds-csi --` recipe found: the pattern no longer matches the README")
	}
}

package deploy_test

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	dockerfilePath = "../Dockerfile"
	makefilePath   = "../Makefile"
	makeTarget     = "image-binary"
)

// instruction is one Dockerfile instruction: its keyword, and its source
// lines with continuations kept, comment lines included.
type instruction struct {
	keyword string
	lines   []string
	line    int // 1-based line of the keyword
}

// text is the instruction's arguments: continuations joined, comment lines
// dropped (as the Dockerfile parser does).
func (in instruction) text() string {
	var parts []string
	for i, l := range in.lines {
		if i > 0 && isComment(l) {
			continue
		}
		parts = append(parts, strings.TrimSuffix(strings.TrimRight(l, " \t"), `\`))
	}
	s := strings.Join(parts, " ")
	s = strings.TrimSpace(s)
	_, rest, _ := strings.Cut(s, " ")
	return strings.TrimSpace(rest)
}

func isComment(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "#") }

// parseDockerfile returns the instructions of a Dockerfile, grouped by stage
// (each FROM starts one).
func parseDockerfile(t *testing.T, data string) [][]instruction {
	t.Helper()
	lines := strings.Split(data, "\n")
	var stages [][]instruction
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || isComment(l) {
			continue
		}
		in := instruction{keyword: strings.ToUpper(strings.Fields(l)[0]), line: i + 1, lines: []string{l}}
		for strings.HasSuffix(strings.TrimRight(l, " \t"), `\`) && i+1 < len(lines) {
			i++
			l = lines[i]
			in.lines = append(in.lines, l)
			for isComment(l) && i+1 < len(lines) { // comment lines do not end a continuation
				i++
				l = lines[i]
				in.lines = append(in.lines, l)
			}
		}
		if in.keyword == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.keyword != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.keyword)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

// shellWords splits a shell command line into words, honouring quotes and
// backslashes; the control operators &&, ||, ; and | become words of their own.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) && strings.ContainsRune(`"\$`+"`", rs[i+1]) {
				i++
				cur.WriteRune(rs[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case r == ' ' || r == '\t' || r == '\n':
			flush()
		case r == ';' || r == '|' || r == '&':
			flush()
			op := string(r)
			if i+1 < len(rs) && (rs[i+1] == '&' || rs[i+1] == '|') && r != ';' {
				i++
				op += string(rs[i])
			}
			words = append(words, op)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	flush()
	return words, nil
}

// commands splits shell words at control operators.
func commands(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		if slices.Contains([]string{"&&", "||", ";", "|", "&"}, w) {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

var varRef = regexp.MustCompile(`\$\{(\w+)\}|\$\((\w+)\)|\$(\w+)`)

// normalize writes ${X}, $(X) and $X alike, as $X: Docker and make spell
// variable references differently.
func normalize(s string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		sm := varRef.FindStringSubmatch(m)
		return "$" + sm[1] + sm[2] + sm[3]
	})
}

// goBuild is a parsed "ENV=... go build FLAGS PACKAGES" command.
type goBuild struct {
	Env      map[string]string
	Flags    map[string]string // "-trimpath": "", "-ldflags": "..."; -o is kept apart
	Output   string
	Packages []string
}

// parseGoBuild finds the go build command among shell commands.
func parseGoBuild(cmds [][]string) (goBuild, error) {
	for _, c := range cmds {
		i := 0
		env := map[string]string{}
		for ; i < len(c) && regexp.MustCompile(`^\w+=`).MatchString(c[i]); i++ {
			k, v, _ := strings.Cut(c[i], "=")
			env[k] = normalize(v)
		}
		if i+1 >= len(c) || (c[i] != "go" && normalize(c[i]) != "$GO") || c[i+1] != "build" {
			continue
		}
		b := goBuild{Env: env, Flags: map[string]string{}}
		args := c[i+2:]
		for j := 0; j < len(args); j++ {
			a := args[j]
			if !strings.HasPrefix(a, "-") {
				b.Packages = append(b.Packages, args[j:]...)
				break
			}
			name, val, hasVal := strings.Cut(a, "=")
			if !hasVal && slices.Contains([]string{"-o", "-ldflags", "-gcflags", "-tags", "-mod", "-p", "-pgo", "-buildmode", "-installsuffix", "-asmflags", "-overlay"}, name) {
				if j+1 >= len(args) {
					return goBuild{}, fmt.Errorf("%s without a value", name)
				}
				j++
				val = args[j]
			}
			if name == "-o" {
				b.Output = normalize(val)
				continue
			}
			b.Flags[name] = normalize(val)
		}
		return b, nil
	}
	return goBuild{}, fmt.Errorf("no go build command in %q", cmds)
}

// dockerBuild returns the Dockerfile's go build and the stages.
func dockerBuild(t *testing.T) (goBuild, [][]instruction) {
	t.Helper()
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(data))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a runtime stage, found %d stage(s)", len(stages))
	}
	var found []goBuild
	for _, in := range stages[0] {
		if in.keyword != "RUN" || !strings.Contains(in.text(), "go build") {
			continue
		}
		words, err := shellWords(in.text())
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN --mount=... options
			words = words[1:]
		}
		b, err := parseGoBuild(commands(words))
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		found = append(found, b)
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: want one go build in the first stage, found %d", len(found))
	}
	return found[0], stages
}

// makeBuild returns the go build of the Makefile's image-binary recipe.
func makeBuild(t *testing.T) goBuild {
	t.Helper()
	data, err := os.ReadFile(makefilePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var recipe []string
	for i, l := range lines {
		if !regexp.MustCompile(`^` + makeTarget + `\s*:`).MatchString(l) {
			continue
		}
		for _, r := range lines[i+1:] {
			if !strings.HasPrefix(r, "\t") {
				break
			}
			recipe = append(recipe, strings.TrimPrefix(r, "\t"))
		}
		break
	}
	if len(recipe) == 0 {
		t.Fatalf("Makefile: no recipe for %s (recipe lines start with a tab)", makeTarget)
	}
	text := strings.ReplaceAll(strings.Join(recipe, "\n"), "\\\n", " ")
	text = strings.TrimLeft(text, "@-+")
	words, err := shellWords(text)
	if err != nil {
		t.Fatalf("Makefile %s: %v", makeTarget, err)
	}
	b, err := parseGoBuild(commands(words))
	if err != nil {
		t.Fatalf("Makefile %s: %v", makeTarget, err)
	}
	return b
}

// `make image-binary` builds the binary exactly as the image does.
func TestImageBuildMatchesMakefile(t *testing.T) {
	docker, stages := dockerBuild(t)
	mk := makeBuild(t)

	if diff := cmp.Diff(docker.Env, mk.Env); diff != "" {
		t.Errorf("go build environment differs (-Dockerfile +Makefile %s):\n%s", makeTarget, diff)
	}
	if diff := cmp.Diff(docker.Flags, mk.Flags); diff != "" {
		t.Errorf("go build flags differ (-Dockerfile +Makefile %s):\n%s", makeTarget, diff)
	}
	if diff := cmp.Diff(docker.Packages, mk.Packages); diff != "" {
		t.Errorf("go build packages differ (-Dockerfile +Makefile %s):\n%s", makeTarget, diff)
	}

	// What both must be.
	if docker.Env["CGO_ENABLED"] != "0" {
		t.Errorf("CGO_ENABLED=%q, want 0 (a static binary for a Debian runtime)", docker.Env["CGO_ENABLED"])
	}
	if _, ok := docker.Flags["-trimpath"]; !ok {
		t.Error("no -trimpath")
	}
	ld := strings.Fields(docker.Flags["-ldflags"])
	for _, w := range []string{"-s", "-w"} {
		if !slices.Contains(ld, w) {
			t.Errorf("-ldflags %q lacks %s", docker.Flags["-ldflags"], w)
		}
	}
	if i := slices.Index(ld, "-X"); i < 0 || i+1 >= len(ld) || ld[i+1] != "main.version=$VERSION" {
		t.Errorf("-ldflags %q: want -X main.version=$VERSION", docker.Flags["-ldflags"])
	}
	if diff := cmp.Diff([]string{"."}, docker.Packages); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}

	// Every variable the Dockerfile's build uses is an ARG of the stage.
	args := map[string]bool{}
	for _, in := range stages[0] {
		if in.keyword == "ARG" {
			for _, a := range strings.Fields(in.text()) {
				name, _, _ := strings.Cut(a, "=")
				args[name] = true
			}
		}
	}
	for _, v := range append(slices.Collect(maps.Values(docker.Env)), docker.Flags["-ldflags"]) {
		for _, m := range varRef.FindAllStringSubmatch(v, -1) {
			if name := m[1] + m[2] + m[3]; !args[name] {
				t.Errorf("the build uses $%s, which is not an ARG of the build stage", name)
			}
		}
	}

	// The runtime stage copies that output and runs it.
	runtime := stages[len(stages)-1]
	var copied, entry string
	for _, in := range runtime {
		f := strings.Fields(in.text())
		switch in.keyword {
		case "COPY":
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") && f[1] == docker.Output {
				copied = f[2]
			}
		case "ENTRYPOINT":
			entry = in.text()
		}
	}
	if copied == "" {
		t.Fatalf("the runtime stage does not COPY --from the build output %s", docker.Output)
	}
	if want := fmt.Sprintf(`["%s"]`, copied); entry != want {
		t.Errorf("ENTRYPOINT %s, want %s (exec form: signals reach the plugin)", entry, want)
	}
}

// The runtime stage installs only what mounting and formatting need, each
// package with its reason, and never nvme-cli.
func TestRuntimeImagePackages(t *testing.T) {
	_, stages := dockerBuild(t)
	runtime := stages[len(stages)-1]
	if from := runtime[0].text(); !strings.HasPrefix(from, "debian:bookworm") {
		t.Errorf("runtime stage FROM %s: want a Debian bookworm image", from)
	}
	var pkgs []string
	for _, in := range runtime {
		if in.keyword != "RUN" || !strings.Contains(in.text(), "apt-get install") {
			continue
		}
		if !strings.Contains(in.text(), "--no-install-recommends") {
			t.Errorf("Dockerfile:%d: apt-get install without --no-install-recommends", in.line)
		}
		if !strings.Contains(in.text(), "rm -rf /var/lib/apt/lists") {
			t.Errorf("Dockerfile:%d: the apt lists are left in the image", in.line)
		}
		// The package lines follow the "apt-get install" line, up to the
		// next command: each one names packages, after a comment that says
		// why, starting with the package's name.
		start := slices.IndexFunc(in.lines, func(l string) bool { return strings.Contains(l, "apt-get install") })
		for i := start + 1; i < len(in.lines); i++ {
			l := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(in.lines[i]), `\`))
			if isComment(l) || l == "" {
				continue
			}
			if strings.HasPrefix(l, "&&") || strings.HasPrefix(l, "||") || strings.HasPrefix(l, ";") {
				break
			}
			fields := strings.Fields(l)
			if len(fields) != 1 || strings.HasPrefix(fields[0], "-") {
				t.Errorf("Dockerfile:%d: %q: want one package per line", in.line+i, l)
				continue
			}
			pkg := fields[0]
			pkgs = append(pkgs, pkg)
			prev := strings.TrimSpace(in.lines[i-1])
			reason, ok := strings.CutPrefix(prev, "#")
			reason = strings.TrimSpace(reason)
			if !ok || !strings.HasPrefix(reason, pkg+":") || len(strings.TrimPrefix(reason, pkg+":")) < 10 {
				t.Errorf("Dockerfile:%d: package %s: the line before it must be a comment %q saying why it is there", in.line+i, pkg, "# "+pkg+": ...")
			}
		}
	}
	slices.Sort(pkgs)
	// What k8s.io/mount-utils runs: mount/umount (mount), blkid, fsck and
	// blockdev (util-linux), mkfs.ext4/e2fsck/resize2fs (e2fsprogs),
	// mkfs.xfs/xfs_growfs (xfsprogs).
	for _, want := range []string{"e2fsprogs", "mount", "util-linux", "xfsprogs"} {
		if !slices.Contains(pkgs, want) {
			t.Errorf("the runtime image does not install %s", want)
		}
	}
	for _, p := range pkgs {
		if strings.Contains(p, "nvme") {
			t.Errorf("the runtime image installs %s: the plugin talks to /dev/nvme-fabrics and sysfs itself, no nvme-cli", p)
		}
	}
	// nvme-cli does not come in any other way either (outside comments).
	for _, in := range runtime {
		for i, l := range in.lines {
			if !isComment(l) && strings.Contains(l, "nvme-cli") {
				t.Errorf("Dockerfile:%d: mentions nvme-cli outside a comment: %q", in.line+i, l)
			}
		}
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a b`, []string{"a", "b"}},
		{`A=1 go build -ldflags "-s -w -X main.version=${VERSION}" .`, []string{"A=1", "go", "build", "-ldflags", "-s -w -X main.version=${VERSION}", "."}},
		{`x 'y z'&&w;v|u`, []string{"x", "y z", "&&", "w", ";", "v", "|", "u"}},
		{`a\ b "c\"d"`, []string{"a b", `c"d`}},
		{`-ldflags '$(LDFLAGS)'`, []string{"-ldflags", "$(LDFLAGS)"}},
	} {
		got, err := shellWords(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	if _, err := shellWords(`"open`); err == nil {
		t.Error(`"open: no error for an unterminated quote`)
	}
}

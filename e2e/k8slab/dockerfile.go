package k8slab

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// RuntimeStage is what the lab's plugin image takes from the Dockerfile's
// last (runtime) stage: the Debian suite of its FROM debian:SUITE[-slim] and
// the packages its RUN ... apt-get install lines install.
type RuntimeStage struct {
	Suite    string   // "bookworm"
	Packages []string // in Dockerfile order
}

var (
	debianImage = regexp.MustCompile(`^debian:([a-z]+)(-slim)?(@sha256:[0-9a-f]{64})?$`)
	debianName  = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
)

// ParseRuntimeStage reads the runtime stage of a Dockerfile. Instructions
// are joined over backslash continuations, with comment lines inside them
// dropped (as the Dockerfile parser does). The stage must start FROM a
// Debian image and install at least one package; an apt-get install word
// that is neither an option nor a Debian package name (a variable, a quote)
// is an error, so the lab never guesses.
func ParseRuntimeStage(dockerfile string) (RuntimeStage, error) {
	stages := dockerfileStages(dockerfile)
	if len(stages) == 0 {
		return RuntimeStage{}, errors.New("the Dockerfile has no FROM")
	}
	stage := stages[len(stages)-1]
	from := strings.Fields(stage[0].args)
	for len(from) > 0 && strings.HasPrefix(from[0], "--") { // --platform=...
		from = from[1:]
	}
	if len(from) == 0 {
		return RuntimeStage{}, fmt.Errorf("line %d of the Dockerfile: FROM without an image", stage[0].line)
	}
	m := debianImage.FindStringSubmatch(from[0])
	if m == nil {
		return RuntimeStage{}, fmt.Errorf("line %d of the Dockerfile: runtime stage FROM %s: want debian:SUITE or debian:SUITE-slim", stage[0].line, from[0])
	}
	rs := RuntimeStage{Suite: m[1]}
	for _, in := range stage[1:] {
		if in.keyword != "RUN" {
			continue
		}
		pkgs, err := aptInstalls(in.args)
		if err != nil {
			return RuntimeStage{}, fmt.Errorf("line %d of the Dockerfile: %w", in.line, err)
		}
		rs.Packages = append(rs.Packages, pkgs...)
	}
	if len(rs.Packages) == 0 {
		return RuntimeStage{}, fmt.Errorf("the Dockerfile's runtime stage (line %d) installs no package with apt-get install", stage[0].line)
	}
	return rs, nil
}

// dockerInstruction is one instruction: its keyword and its arguments with
// continuations joined.
type dockerInstruction struct {
	keyword string
	args    string
	line    int // 1-based line of the keyword
}

// dockerfileStages groups a Dockerfile's instructions by stage; each starts
// with its FROM. Instructions before the first FROM (global ARGs) are dropped.
func dockerfileStages(dockerfile string) [][]dockerInstruction {
	lines := strings.Split(dockerfile, "\n")
	var stages [][]dockerInstruction
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || isDockerComment(l) {
			continue
		}
		start := i
		var parts []string
		for {
			trimmed := strings.TrimRight(l, " \t\r")
			cont := strings.HasSuffix(trimmed, `\`)
			parts = append(parts, strings.TrimSuffix(trimmed, `\`))
			if !cont || i+1 >= len(lines) {
				break
			}
			i++
			l = lines[i]
			for isDockerComment(l) && i+1 < len(lines) { // comment lines do not end a continuation
				i++
				l = lines[i]
			}
		}
		text := strings.TrimSpace(strings.Join(parts, " "))
		keyword, args, _ := strings.Cut(text, " ")
		in := dockerInstruction{keyword: strings.ToUpper(keyword), args: strings.TrimSpace(args), line: start + 1}
		if in.keyword == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	return stages
}

func isDockerComment(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "#") }

// aptInstalls returns the packages of every apt-get install command of a
// RUN's shell text (commands split at &&, ||, ; and |).
func aptInstalls(run string) ([]string, error) {
	var pkgs []string
	for _, cmd := range splitCommands(strings.Fields(run)) {
		for len(cmd) > 0 && strings.Contains(cmd[0], "=") && !strings.HasPrefix(cmd[0], "-") { // VAR=value prefixes
			cmd = cmd[1:]
		}
		if len(cmd) < 2 || cmd[0] != "apt-get" {
			continue
		}
		// The verb is the first word that is not an option or an option's
		// value (-o Name=value).
		verb := slices.IndexFunc(cmd[1:], func(w string) bool { return !strings.HasPrefix(w, "-") && !strings.Contains(w, "=") })
		if verb < 0 || cmd[1+verb] != "install" {
			continue
		}
		for _, w := range cmd[2+verb:] {
			if strings.HasPrefix(w, "-") {
				continue
			}
			if !debianName.MatchString(w) {
				return nil, fmt.Errorf("apt-get install %q: not a Debian package name", w)
			}
			pkgs = append(pkgs, w)
		}
	}
	return pkgs, nil
}

// splitCommands splits words at the shell's control operators (which the
// Dockerfile writes as words of their own).
func splitCommands(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		if slices.Contains([]string{"&&", "||", ";", "|"}, w) {
			out = append(out, cur)
			cur = nil
			continue
		}
		if trimmed, ok := strings.CutSuffix(w, ";"); ok { // "update;"
			cur = append(cur, trimmed)
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(out, cur)
}

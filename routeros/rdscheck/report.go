package rdscheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report for a person: the findings, what was swept
// and left, then the transcript with both streams quoted as Go strings (so
// CR, LF and spaces show exactly as RouterOS sent them).
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if len(r.Swept) > 0 {
		fmt.Fprintf(&b, "Removed first, left by an earlier check: %s\n\n", strings.Join(r.Swept, ", "))
	}
	if r.Interrupted {
		b.WriteString("INTERRUPTED: the probes stopped early; the cleanup ran.\n\n")
	}
	b.WriteString("FINDINGS (ok: the driver handles what this RDS does; DIFFERS: it does not; info: recorded)\n")
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n[%s] %s\n", f.Verdict, f.Name)
		if f.Assumed != "" {
			fmt.Fprintf(&b, "    assumed:  %s\n", f.Assumed)
		}
		if f.Observed != "" {
			fmt.Fprintf(&b, "    observed: %s\n", f.Observed)
		}
		if len(f.Steps) > 0 {
			var s []string
			for _, n := range f.Steps {
				s = append(s, fmt.Sprintf("#%d", n))
			}
			fmt.Fprintf(&b, "    steps:    %s\n", strings.Join(s, " "))
		}
	}
	b.WriteString("\n")
	switch {
	case len(r.LeftBehind) > 0:
		fmt.Fprintf(&b, "LEFT BEHIND (remove by hand, or run the check again: it removes them first): %s\n", strings.Join(r.LeftBehind, ", "))
	case r.CleanupError != "":
		fmt.Fprintf(&b, "CLEANUP NOT CONFIRMED: %s (run the check again: it removes what is left first)\n", r.CleanupError)
	default:
		b.WriteString("Left behind: nothing (no rds-csi-check-* disk, no check file in the volume directory).\n")
	}
	fmt.Fprintf(&b, "\nTRANSCRIPT (%d commands)\n", len(r.Steps))
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "\n#%d %s\n    > %s\n    exit status %d, %.3f s", s.N, s.Probe, s.Command, s.ExitStatus, s.Seconds)
		if s.Class != "" {
			fmt.Fprintf(&b, ", %s", s.Class)
		}
		if s.TransportError != "" {
			fmt.Fprintf(&b, ", not run to its end: %s", s.TransportError)
		}
		fmt.Fprintf(&b, "\n    stdout: %q\n    stderr: %q\n", s.Stdout, s.Stderr)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, transcript included, as JSON (for
// test data).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

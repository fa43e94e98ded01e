package fabrics

import "testing"

// BenchmarkBuildAndValidate measures what Connect does before touching the
// device, for a realistic full Options (two DH-HMAC-CHAP secrets included).
func BenchmarkBuildAndValidate(b *testing.B) {
	o := fullOptions()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.optionString(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildAndValidateMinimal is the common case: no options beyond
// the target.
func BenchmarkBuildAndValidateMinimal(b *testing.B) {
	o := minimalOptions()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.optionString(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedacted(b *testing.B) {
	o := fullOptions()
	b.ReportAllocs()
	for b.Loop() {
		_ = o.Redacted()
	}
}

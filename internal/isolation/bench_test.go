package isolation

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkIsolation isolates k bad lessons (an unknown room) in one batch of 500 (50 jobs of 10)
// against the in-process JobManager simulator, per message style, and reports per isolation:
//
//	submits      JobManager submits, the original batch's included
//	baseline     submits of a bridge that sends one request per event (500)
//	bound        k·⌈log2(n/k)⌉, the information-theoretic yardstick of the issue
//	guarantee    2·k·⌈log2 n⌉ + 2, what the planner never exceeds (checked by the property test)
//	rounds       isolation steps one after another (the deepest part's Depth + 1): latency in batches
//	goodFailed   valid lessons that still ended failed (target 0)
//	badImported  bad lessons that were imported (must be 0)
//
// Run: go test -run '^$' -bench BenchmarkIsolation -benchtime 1x ./internal/isolation/
func BenchmarkIsolation(b *testing.B) {
	const n = 500
	for _, k := range []int{1, 5, 50} {
		for sty := range styleCount {
			b.Run(fmt.Sprintf("k=%d/style=%s", k, sty), func(b *testing.B) {
				bad := randomBad(rand.New(rand.NewPCG(uint64(k), 2026)), n, k)
				var o outcome
				for b.Loop() {
					jm := newSimJobManager(b, simStyles[sty], bad)
					o = isolate(jm, lessonIDs(n), 10, Limits{}, nil)
					jm.close()
				}
				for _, p := range o.problems {
					b.Fatal(p)
				}
				goodFailed, badImported := 0, 0
				for _, id := range lessonIDs(n) {
					if !bad[id] && o.atFault[id] > 0 {
						goodFailed++
					}
					if bad[id] && o.imported[id] > 0 {
						badImported++
					}
				}
				b.ReportMetric(float64(o.submits), "submits")
				b.ReportMetric(n, "baseline")
				b.ReportMetric(float64(k*ceilLog2((n+k-1)/k)), "bound")
				b.ReportMetric(float64(bound(k, n)), "guarantee")
				b.ReportMetric(float64(o.maxDepth+1), "rounds")
				b.ReportMetric(float64(goodFailed), "goodFailed")
				b.ReportMetric(float64(badImported), "badImported")
			})
		}
	}
}

// Package decodebench holds the encoding/json baseline of schemas.Decode and the benchmark
// pair that compares the two (BenchmarkDecode), for issue 13's question whether the
// hand-written event decoder earns its place. It lives outside schemas so that the baseline
// uses only the exported API and schemas keeps no second decoder; it has no code outside
// its tests. TestStdDecodeMatches and FuzzStdDecodeMatches check that the baseline returns
// what Decode returns, errors included, so that the benchmark compares like with like.
package decodebench

package load

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsContiguous(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<20; v++ {
		b := bucketOf(v)
		if b != prev && b != prev+1 {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		lo, w := bucketRange(b)
		if v < lo || v >= lo+w {
			t.Fatalf("value %d not in bucket %d range [%d,%d)", v, b, lo, lo+w)
		}
		prev = b
	}
	if b := bucketOf(histMax); b != histBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", b, histBuckets-1)
	}
	if b := bucketOf(1 << 50); b != histBuckets-1 {
		t.Fatalf("bucketOf(2^50) = %d, want clamp to %d", b, histBuckets-1)
	}
}

func TestQuantileError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(rng.ExpFloat64() * float64(200*time.Microsecond))
		h.add(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.quantile(q))
		if d := got - want; d > want/60+1 || -d > want/60+1 {
			t.Errorf("q%v = %d, want %d ±1.6%%", q, got, want)
		}
	}
	if got := h.quantile(1); int64(got) != vals[len(vals)-1] {
		t.Errorf("max quantile = %d, want %d", got, vals[len(vals)-1])
	}
}

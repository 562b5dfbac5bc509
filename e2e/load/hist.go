package load

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram in nanoseconds: exact below
// 128ns, then 64 buckets per power of two, so a reported quantile is within
// 1/64 (1.6%) of the true value. Values above histMax are clamped. Adding a
// value never allocates.
type histogram struct {
	counts [histBuckets]uint64
	n      int64
	sum    int64
	max    int64
}

const (
	histSub     = 7  // 2^histSub exact buckets, then 2^(histSub-1) per octave
	histMaxBits = 41 // values up to 2^41ns ≈ 36 min
	histMax     = int64(1)<<histMaxBits - 1
	histBuckets = 1<<histSub + (histMaxBits-histSub)<<(histSub-1)
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v > histMax {
		v = histMax
	}
	if v < 1<<histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSub
	return 1<<histSub + (e-1)<<(histSub-1) + int(v>>e) - 1<<(histSub-1)
}

// bucketRange returns the lowest value of bucket i and the bucket's width.
func bucketRange(i int) (lo, width int64) {
	if i < 1<<histSub {
		return int64(i), 1
	}
	j := i - 1<<histSub
	e := j>>(histSub-1) + 1
	m := int64(j&(1<<(histSub-1)-1) + 1<<(histSub-1))
	return m << e, 1 << e
}

func (h *histogram) add(v int64) {
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0..1): the middle of the bucket
// that holds the ceil(q*n)-th smallest value, capped at the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return time.Duration(h.max)
	}
	var cum int64
	for i, c := range h.counts {
		cum += int64(c)
		if cum >= rank {
			lo, w := bucketRange(i)
			v := lo + w/2
			if w == 1 {
				v = lo
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

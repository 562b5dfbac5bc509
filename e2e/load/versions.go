package load

import (
	"slices"
	"sync"
	"time"
)

// Generation is one server generation seen answering: the distinct values
// of its X-Hotswap-Generation, X-Hotswap-Version and X-Hotswap-Pid headers.
type Generation struct {
	// Generation, Version and Pid are the response header values.
	Generation string `json:"generation"`
	Version    string `json:"version"`
	Pid        string `json:"pid"`
	// First and Last are when its first and last response was received.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Responses is the number of responses it gave (any status).
	Responses int64 `json:"responses"`
}

// Version is one X-Hotswap-Version value seen answering.
type Version struct {
	// Version is the header value.
	Version string `json:"version"`
	// First is when its first response was received.
	First time.Time `json:"first"`
	// Responses is the number of responses it gave (any status).
	Responses int64 `json:"responses"`
}

type genKey struct{ gen, ver, pid string }

type genEntry struct {
	first, last int64 // ns since run start
	n           int64
}

// tracker collects the generations and versions seen by all clients. A
// client calls it only when the generation answering it changes.
type tracker struct {
	mu       sync.Mutex
	gens     map[genKey]*genEntry
	versions map[string]*genEntry
	changed  chan struct{} // closed and replaced when a new version appears
}

func newTracker() *tracker {
	return &tracker{gens: map[genKey]*genEntry{}, versions: map[string]*genEntry{}, changed: make(chan struct{})}
}

// seen records that k answered at time at (ns since start).
func (t *tracker) seen(k genKey, at int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.gens[k]; e == nil {
		t.gens[k] = &genEntry{first: at, last: at}
	} else if at < e.first {
		e.first = at
	}
	if e := t.versions[k.ver]; e == nil {
		t.versions[k.ver] = &genEntry{first: at, last: at}
		close(t.changed)
		t.changed = make(chan struct{})
	} else if at < e.first {
		e.first = at
	}
}

// add adds a client's run of n responses from k, the last at last.
func (t *tracker) add(k genKey, last, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.gens[k]; e != nil {
		e.n += n
		e.last = max(e.last, last)
	}
	if e := t.versions[k.ver]; e != nil {
		e.n += n
		e.last = max(e.last, last)
	}
}

// firstSeen returns when version first answered, and a channel closed at
// the next new version.
func (t *tracker) firstSeen(version string) (int64, bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.versions[version]; e != nil {
		return e.first, true, t.changed
	}
	return 0, false, t.changed
}

func (t *tracker) report(start time.Time) ([]Generation, []Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := func(ns int64) time.Time { return start.Add(time.Duration(ns)) }
	var gens []Generation
	for k, e := range t.gens {
		gens = append(gens, Generation{Generation: k.gen, Version: k.ver, Pid: k.pid, First: at(e.first), Last: at(e.last), Responses: e.n})
	}
	slices.SortFunc(gens, func(a, b Generation) int { return a.First.Compare(b.First) })
	var vers []Version
	for v, e := range t.versions {
		vers = append(vers, Version{Version: v, First: at(e.first), Responses: e.n})
	}
	slices.SortFunc(vers, func(a, b Version) int { return a.First.Compare(b.First) })
	return gens, vers
}

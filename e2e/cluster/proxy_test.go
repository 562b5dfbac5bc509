package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// serviceProxy stands in for kube-proxy, which this cluster does not run: it
// listens on 127.0.0.1 and forwards each new TCP connection to one endpoint
// of a Service, taken from the Service's EndpointSlices as kube-proxy does —
// ready endpoints, or serving terminating ones when no endpoint is ready.
// A connection stays with the endpoint it was sent to until either side
// closes it (as conntrack keeps a flow), so keep-alive connections to a
// terminating pod end only when that pod closes them. A failure to reach the
// endpoint resets the client connection: the proxy never retries, so the
// load generator counts what a client behind kube-proxy would see.
type serviceProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	eps    []string // host:port, sorted
	next   atomic.Uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// changes records when the endpoint set changed, for the test log.
	changes []string
	start   time.Time
}

func startServiceProxy(t *testing.T, ns, service, portName string) *serviceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &serviceProxy{ln: ln, cancel: cancel, start: time.Now()}
	w, err := client(t).DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		t.Fatal(err)
	}
	slices := map[string]*discoveryv1.EndpointSlice{}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(slices, s.Name)
			} else {
				slices[s.Name] = s
			}
			p.setEndpoints(slices, portName)
		}
	}()
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.forward(ctx, c) }()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *serviceProxy) Addr() string { return p.ln.Addr().String() }

func (p *serviceProxy) stop() {
	p.cancel()
	p.ln.Close()
	p.wg.Wait()
}

func (p *serviceProxy) setEndpoints(slices map[string]*discoveryv1.EndpointSlice, portName string) {
	var ready, serving []string
	for _, s := range slices {
		var port int32 = -1
		for _, sp := range s.Ports {
			if sp.Name != nil && *sp.Name == portName && sp.Port != nil {
				port = *sp.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			hp := net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))
			c := e.Conditions
			switch {
			case c.Ready == nil || *c.Ready:
				ready = append(ready, hp)
			case c.Serving != nil && *c.Serving:
				serving = append(serving, hp)
			}
		}
	}
	eps := ready
	if len(eps) == 0 {
		eps = serving
	}
	sort.Strings(eps)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !equal(eps, p.eps) {
		p.changes = append(p.changes, time.Since(p.start).Round(time.Millisecond).String()+" "+join(eps))
	}
	p.eps = eps
}

func (p *serviceProxy) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.eps) == 0 {
		return ""
	}
	return p.eps[p.next.Add(1)%uint64(len(p.eps))]
}

func (p *serviceProxy) forward(ctx context.Context, c net.Conn) {
	defer c.Close()
	ep := p.pick()
	if ep == "" {
		reset(c)
		return
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	b, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		reset(c) // kube-proxy's DNAT to a dead endpoint: the client sees a reset or refusal
		return
	}
	defer b.Close()
	done := make(chan error, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err == nil {
			_ = dst.(*net.TCPConn).CloseWrite()
		}
		done <- err
	}
	go pipe(b, c)
	go pipe(c, b)
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			reset(c) // pass a reset on as a reset
			reset(b)
			return
		}
	}
}

// reset closes c with SO_LINGER 0: the peer gets RST, not FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func join(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "," + x
	}
	return out
}

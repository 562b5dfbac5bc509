package kubetest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AssetsEnv names the environment variable that points at the directory
// hack/kube-assets.sh built the binaries into.
const AssetsEnv = "HOTSWAP_KUBE_ASSETS"

// KubeVersion is the Kubernetes version hack/kube-assets.sh builds by default;
// it names the default cache directory.
const KubeVersion = "v1.37.2"

// KeepEnv names an environment variable that, when set to 1, keeps the
// cluster's working directory (logs, certificates, etcd data) after Stop.
const KeepEnv = "HOTSWAP_KUBETEST_KEEP"

// ErrNoAssets is returned by Start when the binaries are not built.
var ErrNoAssets = errors.New("kubetest: kube-apiserver/etcd/kubectl not found")

// Options tunes Start. The zero value is what most tests want.
type Options struct {
	// Assets is the directory holding kube-apiserver, etcd and kubectl.
	// Empty means $HOTSWAP_KUBE_ASSETS, then the default cache directory.
	Assets string
	// Dir is the working directory for logs, certificates and etcd data.
	// Empty means a fresh temporary directory removed by Stop.
	Dir string
	// ExtraAPIServerArgs are appended to the kube-apiserver command line.
	ExtraAPIServerArgs []string
}

// Cluster is a running etcd + kube-apiserver pair on 127.0.0.1.
type Cluster struct {
	// Dir holds apiserver.log, etcd.log, the certificates and etcd's data.
	Dir string
	// Host is the apiserver URL, https://127.0.0.1:PORT. It stays the same
	// across StopAPIServer/StartAPIServer.
	Host string
	// KubeconfigPath is a kubeconfig file authenticating as the admin
	// (client certificate in system:masters).
	KubeconfigPath string

	assets  string
	pki     *pki
	tempDir bool
	apiArgs []string

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
	admin     kubernetes.Interface
}

// proc is one child process and the channel closed when it has exited.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// AssetsDir returns the directory the binaries are looked up in: opt if not
// empty, else $HOTSWAP_KUBE_ASSETS, else ~/.cache/hotswap/kube-v1.37.2.
func AssetsDir(opt string) string {
	if opt != "" {
		return opt
	}
	if d := os.Getenv(AssetsEnv); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "hotswap", "kube-"+KubeVersion)
}

// Start builds certificates, starts etcd and kube-apiserver on free loopback
// ports with RBAC on, and waits until /readyz answers ok. Call Stop when done.
func Start(opts Options) (*Cluster, error) {
	assets := AssetsDir(opts.Assets)
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if st, err := os.Stat(filepath.Join(assets, b)); err != nil || st.IsDir() {
			return nil, fmt.Errorf("%w in %s: run hack/kube-assets.sh (or set %s to where it built them)",
				ErrNoAssets, assets, AssetsEnv)
		}
	}
	c := &Cluster{Dir: opts.Dir, assets: assets}
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "hotswap-kubetest-")
		if err != nil {
			return nil, fmt.Errorf("kubetest: make work dir: %w", err)
		}
		c.Dir, c.tempDir = d, true
	} else if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("kubetest: make work dir: %w", err)
	}
	var err error
	if c.pki, err = newPKI(); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	if err := c.pki.write(c.Dir); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	// A port picked free can be taken by someone else before the server
	// binds it (other test packages run their own clusters in parallel):
	// try a few times with fresh ports.
	for attempt := 1; ; attempt++ {
		err = c.startAll(opts)
		if err == nil {
			return c, nil
		}
		c.stopProcs()
		if attempt == 3 {
			c.removeDir()
			return nil, err
		}
	}
}

func (c *Cluster) startAll(opts Options) error {
	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	dataDir := filepath.Join(c.Dir, "etcd")
	if err := os.RemoveAll(dataDir); err != nil {
		return fmt.Errorf("kubetest: clear etcd data: %w", err)
	}
	c.etcd, err = c.spawn("etcd", filepath.Join(c.assets, "etcd"),
		"--name=kubetest", "--data-dir="+dataDir,
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=kubetest="+etcdPeer,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitHTTP(c.etcd, &http.Client{Timeout: time.Second}, etcdClient+"/health", 30*time.Second); err != nil {
		return c.procErr(c.etcd, err)
	}

	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	d := func(f string) string { return filepath.Join(c.Dir, f) }
	c.apiArgs = append([]string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--tls-cert-file=" + d("serving.crt"), "--tls-private-key-file=" + d("serving.key"),
		"--client-ca-file=" + d("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + d("sa.pub"),
		"--service-account-signing-key-file=" + d("sa.key"),
		"--authorization-mode=RBAC",
		// No controller-manager runs: nothing would reconcile the
		// "kubernetes" Endpoints towards a loopback address.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir=" + d("certs"),
	}, opts.ExtraAPIServerArgs...)
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	return c.StartAPIServer()
}

// Admin returns a fresh copy of a rest.Config authenticated as the cluster
// admin (client certificate, group system:masters), with high client-side
// rate limits so tests are not throttled.
func (c *Cluster) Admin() *rest.Config {
	return &rest.Config{
		Host: c.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.pki.caCert, CertData: c.pki.adminCert, KeyData: c.pki.adminKey,
		},
		QPS: 1000, Burst: 2000,
	}
}

// Client returns a typed clientset authenticated as the admin. (Tests may use
// the typed clientset freely; hotswap's production code links only core/v1.)
func (c *Cluster) Client() kubernetes.Interface {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin == nil {
		c.admin = kubernetes.NewForConfigOrDie(c.Admin())
	}
	return c.admin
}

// CAData returns the PEM CA certificate that signed the apiserver's serving
// certificate.
func (c *Cluster) CAData() []byte { return append([]byte(nil), c.pki.caCert...) }

// StartAPIServer starts kube-apiserver (again) on the same port and etcd and
// waits until /readyz answers ok. Start calls it; tests call it after
// StopAPIServer to simulate an apiserver coming back.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil && !c.apiserver.exited() {
		return errors.New("kubetest: kube-apiserver already running")
	}
	p, err := c.spawn("kube-apiserver", filepath.Join(c.assets, "kube-apiserver"), c.apiArgs...)
	if err != nil {
		return err
	}
	c.apiserver = p
	cfg := c.Admin()
	cfg.Timeout = 2 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("kubetest: readyz client: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var body []byte
		resp, err := hc.Get(c.Host + "/readyz")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "ok" {
				return nil
			}
			err = fmt.Errorf("status %s: %s", resp.Status, body)
		}
		if p.exited() {
			return c.procErr(p, errors.New("exited before /readyz was ok"))
		}
		if time.Now().After(deadline) {
			return c.procErr(p, fmt.Errorf("/readyz not ok after 60 s: %v", err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 10 s) and keeps
// etcd, so StartAPIServer brings back the same objects.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return nil
	}
	err := c.apiserver.stop(10 * time.Second)
	c.apiserver = nil
	return err
}

// Stop kills kube-apiserver and etcd, waits for both to be gone and removes
// the working directory (unless it was given in Options.Dir or
// HOTSWAP_KUBETEST_KEEP=1). Safe to call more than once.
func (c *Cluster) Stop() {
	c.stopProcs()
	c.removeDir()
}

func (c *Cluster) stopProcs() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		_ = c.apiserver.stop(10 * time.Second)
		c.apiserver = nil
	}
	if c.etcd != nil {
		_ = c.etcd.stop(10 * time.Second)
		c.etcd = nil
	}
}

func (c *Cluster) removeDir() {
	if c.tempDir && os.Getenv(KeepEnv) != "1" {
		_ = os.RemoveAll(c.Dir)
	}
}

// Main is a TestMain helper: it starts a Cluster, stores it in *cluster,
// runs the tests, stops the cluster and exits. A missing binary fails the
// package with a message saying how to build it.
//
//	var cluster *kubetest.Cluster
//	func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }
func Main(m *testing.M, cluster **Cluster) {
	c, err := Start(Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*cluster = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

func (c *Cluster) writeKubeconfig() error {
	c.KubeconfigPath = filepath.Join(c.Dir, "admin.kubeconfig")
	return writeKubeconfig(c.KubeconfigPath, c.Admin())
}

// writeKubeconfig writes a kubeconfig holding exactly cfg's credentials:
// never a client certificate next to a token (the certificate would win).
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "user"}
	kc.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig %s: %w", path, err)
	}
	return nil
}

// spawn starts a binary with its output in DIR/NAME.log, in its own process
// group, killed by the kernel if the test binary dies first.
func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubetest: open %s log: %w", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything it left in its group
	return nil
}

// procErr wraps err with the process name and the tail of its log.
func (c *Cluster) procErr(p *proc, err error) error {
	tail := ""
	if f, ferr := os.Open(filepath.Join(c.Dir, p.name+".log")); ferr == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		tail = string(b)
	}
	return fmt.Errorf("kubetest: %s: %w\n--- last lines of %s.log:\n%s", p.name, err, p.name, tail)
}

func waitHTTP(p *proc, hc *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if p.exited() {
			return fmt.Errorf("exited before %s answered", url)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 right now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

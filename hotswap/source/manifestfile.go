package source

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// ManifestSettle is how long a manifest file must stand still before it is
// read. A manifest is small and the kubelet swaps it atomically; the pause
// only folds the events of one editor save or one kubelet update.
const ManifestSettle = 100 * time.Millisecond

// ManifestOptions configure a ManifestFile.
type ManifestOptions struct {
	// Path is the manifest, typically a key of a mounted ConfigMap
	// (/etc/hotswap/release.yaml -> ..data/release.yaml).
	Path string
	// Settle: see ManifestSettle (the default).
	Settle time.Duration
	// Resync: see WatchOptions.Resync.
	Resync time.Duration
	// Base is the command line's release: its Args are kept when the
	// manifest gives none.
	Base hotswap.Release
	// Root is --release-root: a relative binary is resolved against it.
	Root string
	Log  *slog.Logger
}

// ManifestFile offers the release a manifest file describes whenever the
// file changes. A manifest that does not parse is refused in the log, with
// the field at fault, and the serving generation keeps serving.
type ManifestFile struct {
	opts ManifestOptions
	dw   *dirWatch
	log  *slog.Logger
	name string

	lastSum [sha256.Size]byte // content last looked at
	gone    bool
}

// NewManifestFile checks the options and starts watching the manifest's
// directory.
func NewManifestFile(opts ManifestOptions) (*ManifestFile, error) {
	if opts.Path == "" {
		return nil, errors.New("manifest: no path; give --manifest /etc/hotswap/release.yaml")
	}
	if opts.Settle <= 0 {
		opts.Settle = ManifestSettle
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	dw, err := newDirWatch(opts.Path, opts.Settle, opts.Resync, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m := &ManifestFile{opts: opts, dw: dw, name: "manifest:" + dw.path}
	m.log = opts.Log.With("source", m.name)
	return m, nil
}

// Name is how releases from this source are labelled ("manifest:/etc/hotswap/release.yaml").
func (m *ManifestFile) Name() string { return m.name }

// Run offers releases to o until ctx is done.
func (m *ManifestFile) Run(ctx context.Context, o Offerer) {
	m.log.Info("watching the release manifest", "path", m.dw.path)
	m.dw.run(ctx, func(st fileState) bool { return m.settled(st, o) })
}

func (m *ManifestFile) settled(st fileState, o Offerer) bool {
	switch {
	case st.missing:
		if !m.gone {
			m.log.Warn("release manifest is gone; the serving generation keeps serving", "path", m.dw.path)
			m.gone = true
		}
		m.lastSum = [sha256.Size]byte{}
		return true
	case st.err != "":
		m.log.Warn("cannot read the release manifest; the serving generation keeps serving", "path", m.dw.path, "err", st.err)
		return true
	}
	m.gone = false
	data, err := readSmall(st.real)
	if err != nil {
		m.log.Warn("cannot read the release manifest; the serving generation keeps serving", "path", m.dw.path, "err", err)
		return true
	}
	sum := sha256.Sum256(data)
	if sum == m.lastSum {
		return true
	}
	m.lastSum = sum
	OfferManifest(data, m.opts.Base, m.opts.Root, m.name, m.log, o)
	return true
}

// OfferManifest parses data as a manifest and offers its release to o, or
// logs (as a warning on log) why it is refused. Sources that read manifests
// from elsewhere (the configmap package) use it, so every manifest is read
// the same way.
func OfferManifest(data []byte, base hotswap.Release, root, source string, log *slog.Logger, o Offerer) {
	man, err := ParseManifest(data)
	var r hotswap.Release
	if err == nil {
		r, err = man.Release(base, root, source)
	}
	if err != nil {
		log.Warn("release manifest refused; the serving generation keeps serving", "err", err)
		if rj, ok := o.(Rejecter); ok {
			rj.Reject(source, err.Error())
		}
		return
	}
	log.Info("release manifest read", "version", r.Version, "path", r.Path)
	o.Offer(r)
	if man.Hotswap != nil {
		up, ok := o.(Upgrader)
		path, err := man.Hotswap.resolve(root)
		switch {
		case !ok:
			log.Warn("release manifest names a new hotswap, but this source cannot upgrade hotswap; ignored", "path", man.Hotswap.Path)
		case err != nil:
			log.Warn("release manifest's hotswap: refused", "err", err)
		default:
			up.OfferUpgrade(path, man.Hotswap.SHA256)
		}
	}
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	return data, nil
}

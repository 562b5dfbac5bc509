package source

import (
	"log/slog"

	"errors"
	"github.com/hotswap-dev/hotswap/hotswap"
	"strings"
	"testing"
)

func TestManifestHotswapField(t *testing.T) {
	sum := strings.Repeat("AB", 32)
	for _, tc := range []struct {
		name, yaml string
		want       *HotswapBinary
		err        string
	}{
		{"absent", "version: v1\nbinary: /r/s\n", nil, ""},
		{"path and pin", "version: v1\nbinary: /r/s\nhotswap: {path: /r/hotswap, sha256: " + sum + "}\n",
			&HotswapBinary{Path: "/r/hotswap", SHA256: strings.ToLower(sum)}, ""},
		{"path only", "version: v1\nbinary: /r/s\nhotswap:\n  path: hotswap-v2\n", &HotswapBinary{Path: "hotswap-v2"}, ""},
		{"no path", "version: v1\nbinary: /r/s\nhotswap: {sha256: " + sum + "}\n", nil, "hotswap.path: missing"},
		{"bad pin", "version: v1\nbinary: /r/s\nhotswap: {path: /h, sha256: xyz}\n", nil, "not 64 hex digits"},
		{"unknown key", "version: v1\nbinary: /r/s\nhotswap: {path: /h, args: [x]}\n", nil, `unknown field "args"`},
		{"not a mapping", "version: v1\nbinary: /r/s\nhotswap: /h\n", nil, "must be a mapping"},
	} {
		m, err := ParseManifest([]byte(tc.yaml))
		if tc.err != "" {
			if err == nil || !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (m.Hotswap == nil) != (tc.want == nil) || m.Hotswap != nil && *m.Hotswap != *tc.want {
			t.Errorf("%s: hotswap %+v, want %+v", tc.name, m.Hotswap, tc.want)
		}
	}
}

// upgradeRecorder is an Offerer and Upgrader that remembers the upgrades.
type upgradeRecorder struct {
	OffererFunc
	upgrades []string
}

func (u *upgradeRecorder) OfferUpgrade(path, sum string) {
	u.upgrades = append(u.upgrades, path+"@"+sum)
}

// TestOfferManifestUpgrades: the hotswap: field reaches an Upgrader, a
// relative path resolved against the release root, after the release.
func TestOfferManifestUpgrades(t *testing.T) {
	var order []string
	u := &upgradeRecorder{}
	u.OffererFunc = func(r hotswap.Release) { order = append(order, "offer "+r.Version) }
	OfferManifest([]byte("version: v2\nbinary: s\nhotswap: {path: hotswap-v2}\n"), hotswap.Release{}, "/releases", "test", slog.New(slog.DiscardHandler), u)
	if len(order) != 1 || len(u.upgrades) != 1 || u.upgrades[0] != "/releases/hotswap-v2@" {
		t.Fatalf("offers %v, upgrades %v", order, u.upgrades)
	}
}

package source

import (
	"fmt"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// HotswapBinary is a manifest's optional hotswap: field, a new hotswap for
// the pod to upgrade itself to in place (docs/upgrade.md):
//
//	hotswap: {path: /releases/hotswap-v2, sha256: 3f1c…}
type HotswapBinary struct {
	Path   string
	SHA256 string
}

// Upgrader is implemented by an Offerer that can upgrade hotswap itself
// (*hotswap.Engine); OfferManifest hands it a manifest's hotswap: field.
type Upgrader interface {
	OfferUpgrade(path, sha256 string)
}

// parseHotswap reads the hotswap: mapping: path (required) and sha256.
func parseHotswap(v *yaml.Node) (*HotswapBinary, error) {
	const field = "hotswap"
	if v.Kind != yaml.MappingNode {
		return nil, manifestErr(v, field, "must be a mapping {path: ..., sha256: ...}, not %s", kindName(v))
	}
	h := &HotswapBinary{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		var err error
		switch k.Value {
		case "path":
			h.Path, err = text(val, field+".path")
			if err == nil && (h.Path == "" || strings.ContainsRune(h.Path, 0) || len(h.Path) > 4096) {
				err = manifestErr(val, field+".path", "want a path such as /releases/hotswap-v2")
			}
		case "sha256":
			h.SHA256, err = text(val, field+".sha256")
			if err == nil && !sha256Re.MatchString(h.SHA256) {
				err = manifestErr(val, field+".sha256", "%q is not 64 hex digits; use the output of sha256sum", clip(h.SHA256))
			}
			h.SHA256 = strings.ToLower(h.SHA256)
		default:
			err = manifestErr(k, field, "unknown field %q; the fields are path, sha256", clip(k.Value))
		}
		if err != nil {
			return nil, err
		}
	}
	if h.Path == "" {
		return nil, manifestErr(v, field+".path", "missing")
	}
	return h, nil
}

// resolve makes a relative path absolute against root, as for binary:.
func (h *HotswapBinary) resolve(root string) (string, error) {
	if filepath.IsAbs(h.Path) {
		return filepath.Clean(h.Path), nil
	}
	if root == "" {
		return "", fmt.Errorf("%w: hotswap.path: %q is relative; make it absolute or set --release-root", ErrManifest, clip(h.Path))
	}
	return filepath.Join(root, h.Path), nil
}

package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	yaml "go.yaml.in/yaml/v3"

	"github.com/hotswap-dev/hotswap/hotswap"
)

// MaxManifestSize bounds a manifest; a ConfigMap value is at most 1 MiB, a
// release manifest is a few lines.
const MaxManifestSize = 64 << 10

// ErrManifest is wrapped by every error of ParseManifest.
var ErrManifest = errors.New("invalid release manifest")

// Manifest is a parsed release manifest (see docs/sources.md):
//
//	version: v1.5                      # required: the label reported everywhere
//	binary: /releases/v1.5/server      # required: absolute, or relative to --release-root
//	sha256: 3f1c…                      # optional: 64 hex digits pinning the content
//	args: [--port, "8080"]             # optional: replaces the command line's arguments
//	env: {LOG_LEVEL: debug}            # optional: set in the environment (wins over the pod's)
//	preflight: [--version]             # optional: run as `binary --version` before the swap
//	hotswap: {path: ..., sha256: ...}  # optional: upgrade hotswap itself in place (docs/upgrade.md)
type Manifest struct {
	Version string
	Binary  string
	SHA256  string
	// Args is nil when the manifest has no args: the command line's are kept.
	Args []string
	// Env is sorted "K=V", one entry per name. It wins over a variable of
	// the same name in hotswap's environment (see hotswap.GenerationEnv).
	Env       []string
	Preflight []string
	// Hotswap, when set, is a new hotswap binary to upgrade to in place.
	Hotswap *HotswapBinary
}

var manifestFields = []string{"version", "binary", "sha256", "args", "env", "preflight", "hotswap"}

var sha256Re = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// manifestErr is one complaint about a manifest, naming the field and line.
func manifestErr(n *yaml.Node, field, format string, a ...any) error {
	where := ""
	if n != nil && n.Line > 0 {
		where = fmt.Sprintf("line %d: ", n.Line)
	}
	if field != "" {
		field += ": "
	}
	return fmt.Errorf("%w: %s%s%s", ErrManifest, where, field, fmt.Sprintf(format, a...))
}

// ParseManifest reads a release manifest strictly: one YAML mapping with only
// the known fields, each of the right kind; no anchors, aliases or custom
// tags. The error names the field (and line) that is wrong.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if len(data) > MaxManifestSize {
		return m, manifestErr(nil, "", "%d bytes; a manifest is at most %d", len(data), MaxManifestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return m, manifestErr(nil, "", "empty; want at least version: and binary:")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); errors.Is(err, io.EOF) {
		return m, manifestErr(nil, "", "empty (only comments); want at least version: and binary:")
	} else if err != nil {
		return m, manifestErr(nil, "", "not valid YAML: %v", err)
	}
	var extra yaml.Node
	if err := decodeNode(dec, &extra); !errors.Is(err, io.EOF) {
		return m, manifestErr(&extra, "", "more than one YAML document; put one release in the manifest")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return m, manifestErr(root, "", "empty document; want at least version: and binary:")
		}
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return m, manifestErr(root, "", "must be a mapping of fields (version:, binary:, ...), not %s", kindName(root))
	}
	if err := plain(root, ""); err != nil {
		return m, err
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return m, manifestErr(k, "", "field names must be plain strings (no merge keys, lists or maps), not %s", clip(k.Value))
		}
		name := k.Value
		if !slices.Contains(manifestFields, name) {
			return m, manifestErr(k, name, "unknown field; the fields are %s", strings.Join(manifestFields, ", "))
		}
		if seen[name] {
			return m, manifestErr(k, name, "given twice")
		}
		seen[name] = true
		if err := plain(v, name); err != nil {
			return m, err
		}
		var err error
		switch name {
		case "version":
			m.Version, err = text(v, name)
			if err == nil {
				err = checkVersion(v, m.Version)
			}
		case "binary":
			m.Binary, err = text(v, name)
			if err == nil && (m.Binary == "" || strings.ContainsRune(m.Binary, 0) || len(m.Binary) > 4096) {
				err = manifestErr(v, name, "want a path such as /releases/v1.5/server")
			}
		case "sha256":
			m.SHA256, err = text(v, name)
			if err == nil && !sha256Re.MatchString(m.SHA256) {
				err = manifestErr(v, name, "%q is not 64 hex digits; use the output of sha256sum", clip(m.SHA256))
			}
			m.SHA256 = strings.ToLower(m.SHA256)
		case "args":
			m.Args, err = list(v, name, false)
			if m.Args == nil && err == nil {
				m.Args = []string{}
			}
		case "preflight":
			m.Preflight, err = list(v, name, true)
		case "env":
			m.Env, err = envMap(v)
		case "hotswap":
			m.Hotswap, err = parseHotswap(v)
		}
		if err != nil {
			return Manifest{}, err
		}
	}
	for _, f := range []string{"version", "binary"} {
		if !seen[f] {
			return Manifest{}, manifestErr(nil, f, "missing; a manifest needs version: and binary:")
		}
	}
	return m, nil
}

// decodeNode decodes one document, turning a panic of the YAML library on
// hostile input into an error.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML parser: %v", r)
		}
	}()
	return dec.Decode(n)
}

// plain refuses anchors, aliases and explicit non-standard tags anywhere in n.
func plain(n *yaml.Node, field string) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return manifestErr(n, field, "anchors and aliases (&, *) are not allowed")
	}
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		return manifestErr(n, field, "custom tag %s is not allowed", clip(n.Tag))
	}
	for _, c := range n.Content {
		if err := plain(c, field); err != nil {
			return err
		}
	}
	return nil
}

// text reads a scalar that must be a string; a number is taken as written
// (version: 1.10 is "1.10").
func text(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", manifestErr(n, field, "must be a string, not %s", kindName(n))
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		return n.Value, nil
	}
	return "", manifestErr(n, field, "must be a string, not %s (quote it)", kindName(n))
}

// list reads a sequence of strings; with split, a single string is split on
// blanks (preflight: --version).
func list(n *yaml.Node, field string, split bool) ([]string, error) {
	if n.Kind == yaml.ScalarNode && split {
		s, err := text(n, field)
		if err != nil {
			return nil, err
		}
		return strings.Fields(s), nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, manifestErr(n, field, "must be a list of strings, e.g. [--port, \"8080\"], not %s", kindName(n))
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		s, err := text(c, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		if strings.ContainsRune(s, 0) {
			return nil, manifestErr(c, fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte")
		}
		out = append(out, s)
	}
	return out, nil
}

func envMap(n *yaml.Node) ([]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, manifestErr(n, "env", "must be a mapping of NAME: value, not %s", kindName(n))
	}
	var out []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, err := text(k, "env")
		if err != nil {
			return nil, err
		}
		field := "env." + clip(name)
		if name == "" || strings.ContainsAny(name, "=\x00") || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
			return nil, manifestErr(k, field, "not a valid variable name")
		}
		if why := hotswap.EnvRefusal(name); why != "" {
			return nil, manifestErr(k, field, "%s", why)
		}
		if seen[name] {
			return nil, manifestErr(k, field, "given twice")
		}
		seen[name] = true
		val, err := text(v, field)
		if err != nil {
			return nil, err
		}
		if strings.ContainsRune(val, 0) {
			return nil, manifestErr(v, field, "contains a NUL byte")
		}
		out = append(out, name+"="+val)
	}
	sort.Strings(out)
	return out, nil
}

func checkVersion(n *yaml.Node, v string) error {
	if v == "" || len(v) > 128 {
		return manifestErr(n, "version", "want a label of 1 to 128 characters, e.g. v1.5")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return manifestErr(n, "version", "%q: only printable characters without blanks", clip(v))
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "empty (null)"
	case "!!bool":
		return "a boolean"
	case "!!int", "!!float":
		return "a number"
	}
	return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
}

// clip keeps user text in messages short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Release turns the manifest into a release. base is the command line's
// release (its Args are kept when the manifest gives none); root is
// --release-root, against which a relative binary is resolved.
func (m Manifest) Release(base hotswap.Release, root, source string) (hotswap.Release, error) {
	bin := m.Binary
	if !filepath.IsAbs(bin) {
		if root == "" {
			return hotswap.Release{}, fmt.Errorf("%w: binary: %q is relative; make it absolute or set --release-root", ErrManifest, clip(bin))
		}
		bin = filepath.Join(root, bin)
	}
	r := hotswap.Release{
		Version:   m.Version,
		Path:      filepath.Clean(bin),
		Args:      m.Args,
		Env:       m.Env,
		SHA256:    m.SHA256,
		Preflight: m.Preflight,
		Source:    source,
	}
	if r.Args == nil {
		r.Args = base.Args
	}
	if r.Env == nil {
		r.Env = base.Env
	}
	return r, nil
}

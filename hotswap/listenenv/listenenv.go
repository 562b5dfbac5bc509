package listenenv

import (
	"errors"
	"fmt"
	"strings"
	"text/template/parse"
)

// FirstFD is the descriptor of the first listener (SD_LISTEN_FDS_START).
const FirstFD = 3

// ErrSpec is wrapped by every error about a --listen-env value.
var ErrSpec = errors.New("listen-env")

// Var is one parsed NAME=TEMPLATE.
type Var struct {
	Name string
	Text string // the template, as given
	tmpl *parse.Tree
}

// String is the variable in flag form.
func (v Var) String() string { return v.Name + "=" + v.Text }

// Listener is what a template sees of one passed socket.
type Listener struct {
	FD   int    // its descriptor in the generation
	Name string // its --listen name (LISTEN_FDNAMES)
	Addr string // its address, e.g. tcp://:8080
}

// Parse reads NAME=TEMPLATE and parses the template; names the template
// refers to are checked by Render, against the listeners.
func Parse(s string) (Var, error) {
	name, text, ok := strings.Cut(s, "=")
	if !ok || !validName(name) {
		return Var{}, fmt.Errorf("%w %q: want NAME=TEMPLATE with NAME a variable name (letters, digits, _), e.g. 'NGINX={{range .}}{{.FD}};{{end}}'", ErrSpec, s)
	}
	if reserved(name) {
		return Var{}, fmt.Errorf("%w %q: hotswap sets %s itself for each generation", ErrSpec, s, name)
	}
	t, err := parseTemplate(name, text)
	if err != nil {
		return Var{}, fmt.Errorf("%w %q: %w", ErrSpec, s, err)
	}
	return Var{Name: name, Text: text, tmpl: t}, nil
}

// Listeners numbers the passed sockets as the generation sees them: in
// --listen order from FirstFD. names and addrs are parallel.
func Listeners(names, addrs []string) []Listener {
	out := make([]Listener, len(names))
	for i := range names {
		out[i] = Listener{FD: FirstFD + i, Name: names[i]}
		if i < len(addrs) {
			out[i].Addr = addrs[i]
		}
	}
	return out
}

// Render renders every variable as NAME=VALUE. With no listeners (reuseport
// mode, or no --listen) any variable is an error: there is nothing to
// present.
func Render(vars []Var, ls []Listener) ([]string, error) {
	if len(vars) == 0 {
		return nil, nil
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("%w %s: no sockets to present: it needs --listen (handoff mode)", ErrSpec, vars[0])
	}
	fd := func(name string) (int, error) {
		for _, l := range ls {
			if l.Name == name {
				return l.FD, nil
			}
		}
		return 0, fmt.Errorf("no --listen named %q", name)
	}
	out := make([]string, 0, len(vars))
	for _, v := range vars {
		if v.tmpl == nil {
			return nil, fmt.Errorf("%w %s: not parsed (use listenenv.Parse)", ErrSpec, v)
		}
		val, err := evalTemplate(v.tmpl, ls, fd)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrSpec, v, err)
		}
		if strings.ContainsRune(val, 0) {
			return nil, fmt.Errorf("%w %s: the value contains a NUL byte", ErrSpec, v)
		}
		out = append(out, v.Name+"="+val)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// reserved names are set by hotswap for each generation: a template must
// not shadow them (a stale LISTEN_PID breaks socket activation).
func reserved(name string) bool {
	switch name {
	case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET":
		return true
	}
	return strings.HasPrefix(name, "HOTSWAP_")
}

// Override returns env with every rendered NAME=VALUE replacing a variable
// of the same name: getenv(3) returns the first match, so a stale value
// inherited from hotswap's own environment must not stay in front.
func Override(env, rendered []string) []string {
	if len(rendered) == 0 {
		return env
	}
	set := make(map[string]bool, len(rendered))
	for _, kv := range rendered {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	out := make([]string, 0, len(env)+len(rendered))
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			out = append(out, kv)
		}
	}
	return append(out, rendered...)
}

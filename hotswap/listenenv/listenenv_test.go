package listenenv

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	ls := Listeners([]string{"http", "admin"}, []string{"tcp://:8080", "tcp://127.0.0.1:9090"})
	for _, tc := range []struct {
		spec, want string
	}{
		{`NGINX={{range .}}{{.FD}};{{end}}`, "NGINX=3;4;"},
		{`APP_FD={{fd "admin"}}`, "APP_FD=4"},
		{`FDS={{range $i, $l := .}}{{if $i}},{{end}}{{$l.Name}}:{{$l.FD}}{{end}}`, "FDS=http:3,admin:4"},
		{`ADDR={{(index . 0).Addr}}`, "ADDR=tcp://:8080"},
		{`PLAIN=no template`, "PLAIN=no template"},
		{`EMPTY=`, "EMPTY="},
	} {
		v, err := Parse(tc.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		got, err := Render([]Var{v}, ls)
		if err != nil || !slices.Equal(got, []string{tc.want}) {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ spec, why string }{
		{"NOEQUALS", "want NAME=TEMPLATE"},
		{"=3", "want NAME=TEMPLATE"},
		{"1X=3", "want NAME=TEMPLATE"},
		{"A-B=3", "want NAME=TEMPLATE"},
		{"LISTEN_FDS=2", "hotswap sets LISTEN_FDS"},
		{"LISTEN_PID=2", "hotswap sets"},
		{"NOTIFY_SOCKET=x", "hotswap sets"},
		{"HOTSWAP_GENERATION=1", "hotswap sets"},
		{"NGINX={{range .}}", "unexpected EOF"},
		{"X={{nosuchfunc}}", "not defined"},
	} {
		_, err := Parse(tc.spec)
		if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Parse(%q) = %v; want an ErrSpec saying %q", tc.spec, err, tc.why)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	ls := Listeners([]string{"http"}, nil)
	for _, tc := range []struct {
		spec string
		ls   []Listener
		why  string
	}{
		{`A={{fd "admin"}}`, ls, `no --listen named "admin"`},
		{`A={{.FD}}`, ls, "can't evaluate field FD"},
		{`NGINX={{range .}}{{.FD}};{{end}}`, nil, "needs --listen"},
	} {
		v, err := Parse(tc.spec)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.spec, err)
		}
		_, err = Render([]Var{v}, tc.ls)
		if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Render(%q) = %v; want an ErrSpec saying %q", tc.spec, err, tc.why)
		}
	}
	if _, err := Render([]Var{{Name: "X", Text: "1"}}, ls); err == nil {
		t.Error("Render of an unparsed Var: no error")
	}
	if got, err := Render(nil, nil); got != nil || err != nil {
		t.Errorf("Render(nil, nil) = %q, %v; want nothing", got, err)
	}
}

func TestOverride(t *testing.T) {
	env := []string{"PATH=/bin", "NGINX=9;", "HOME=/root"}
	got := Override(env, []string{"NGINX=3;"})
	if want := []string{"PATH=/bin", "HOME=/root", "NGINX=3;"}; !slices.Equal(got, want) {
		t.Errorf("Override = %q, want %q", got, want)
	}
	if got := Override(env, nil); !slices.Equal(got, env) {
		t.Errorf("Override with nothing rendered = %q, want env unchanged", got)
	}
}

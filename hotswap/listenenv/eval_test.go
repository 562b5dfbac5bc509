package listenenv

import (
	"errors"
	"strings"
	"testing"
	"text/template"
)

// TestEvalMatchesTextTemplate renders each template with the evaluator and
// with text/template itself: the subset must give the same output.
func TestEvalMatchesTextTemplate(t *testing.T) {
	ls := Listeners([]string{"http", "admin", "grpc"}, []string{"tcp://:8080", "tcp://127.0.0.1:9090", "unix:///run/g.sock"})
	fd := func(name string) (int, error) {
		for _, l := range ls {
			if l.Name == name {
				return l.FD, nil
			}
		}
		return 0, errors.New("no such listener")
	}
	for _, text := range []string{
		`{{range .}}{{.FD}};{{end}}`,
		`{{range $i, $l := .}}{{if $i}},{{end}}{{$l.Name}}={{$l.FD}}{{end}}`,
		`{{range $l := .}}{{$l.Addr}} {{end}}`,
		`{{range .}}{{else}}none{{end}}`,
		`{{fd "grpc"}}`,
		`{{(index . 1).Addr}}|{{(index $ 2).Name}}`,
		`{{len .}} {{len "abc"}}`,
		`{{with index . 0}}{{.Name}}{{else}}-{{end}}`,
		`{{if eq (len .) 3}}three{{else if eq (len .) 2}}two{{else}}many{{end}}`,
		`{{if ne (fd "http") 3}}no{{else}}yes{{end}}`,
		`{{printf "%s:%d" (index . 0).Name (index . 0).FD}}`,
		`{{print 1 "a" 2}}`,
		`{{fd "admin" | printf "fd=%d"}}`,
		`{{"http" | fd}}`,
		`{{if and (fd "http") (not false)}}a{{end}}{{or "" "b"}}{{and 0 1}}`,
		`{{$n := len .}}{{range .}}{{$n}}{{end}}`,
		`{{/* a comment */}}x {{- " y " -}} z`,
		`{{range .}}{{if eq .Name "admin"}}{{.FD}}{{end}}{{end}}`,
		`{{index . 0}}`,
		`{{true}} {{42}} {{"s"}}`,
		`{{range 2}}{{.}}{{end}}`,
	} {
		tt, err := template.New("x").Option("missingkey=error").Funcs(template.FuncMap{"fd": fd}).Parse(text)
		if err != nil {
			t.Fatalf("text/template parse %q: %v", text, err)
		}
		var want strings.Builder
		if err := tt.Execute(&want, ls); err != nil {
			t.Fatalf("text/template execute %q: %v", text, err)
		}
		tree, err := parseTemplate("x", text)
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", text, err)
			continue
		}
		got, err := evalTemplate(tree, ls, fd)
		if err != nil || got != want.String() {
			t.Errorf("evalTemplate(%q) = %q, %v; text/template gives %q", text, got, err, want.String())
		}
	}
}

// TestEvalRefuses: constructs outside the subset fail at parse, fields
// that do not exist and bad arguments fail at render, never silently.
func TestEvalRefuses(t *testing.T) {
	for _, text := range []string{
		`{{define "a"}}x{{end}}`,
		`{{template "a"}}`,
		`{{range .}}{{break}}{{end}}`,
		`{{$x := 1}}{{$x = 2}}`,
		`{{html "x"}}`,
		`{{1.5}}`,
	} {
		tree, err := parseTemplate("x", text)
		if err != nil {
			continue
		}
		if got, err := evalTemplate(tree, Listeners([]string{"http"}, nil), nil); err == nil {
			t.Errorf("%q: parsed and rendered %q; want an error", text, got)
		}
	}
	ls := Listeners([]string{"http"}, nil)
	for _, text := range []string{`{{.Nope}}`, `{{(index . 0).Nope}}`, `{{index . 5}}`, `{{range 1.5}}{{end}}`, `{{$.FD}}`, `{{len 3}}`} {
		tree, err := parseTemplate("x", text)
		if err != nil {
			continue
		}
		if got, err := evalTemplate(tree, ls, nil); err == nil {
			t.Errorf("evalTemplate(%q) = %q; want an error", text, got)
		}
	}
}

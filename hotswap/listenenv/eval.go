package listenenv

import (
	"errors"
	"fmt"
	"strings"

	"text/template/parse"
)

// Templates are parsed by text/template/parse, so the syntax (and every
// parse error) is Go's, but evaluated here rather than by text/template:
// text/template's executor looks methods up by name with reflection
// (reflect.Value.MethodByName), and a reachable MethodByName makes the
// linker keep every exported method of every type in the binary — 5.9 MB of
// hotswap's 26.9 MB (docs/perf-footprint.md). A listen-env template only
// ever sees []Listener, so the subset below is all it can use anyway.
//
// Supported: text, {{.Field}} and {{$var.Field}} on a Listener (FD, Name,
// Addr), {{range}} (with $i, $l := and {{else}}), {{if}}/{{else}},
// {{with}}, variables, string/number/bool literals, parenthesised
// pipelines, `|`, and the functions fd, index, len, print, printf, eq, ne,
// not, and, or. Anything else ({{define}}, {{template}}, {{break}}, other
// functions) is refused at Parse.

// funcs names the functions a template may call (call implements them);
// parse checks identifiers against it, so an unknown function is a parse
// error as in text/template. It only tests the values for nil.
var funcs = map[string]any{
	"fd": true, "index": true, "len": true, "print": true, "printf": true,
	"eq": true, "ne": true, "not": true, "and": true, "or": true,
}

// errUnsupported is wrapped by a parse that uses a construct outside the
// subset evalTemplate implements.
var errUnsupported = errors.New("not supported in a listen-env template")

// parseTemplate parses text and checks it uses only the supported subset.
func parseTemplate(name, text string) (*parse.Tree, error) {
	trees, err := parse.Parse(name, text, "", "", funcs)
	if err != nil {
		return nil, err
	}
	t := trees[name]
	if len(trees) != 1 || t == nil {
		return nil, fmt.Errorf("{{define}} or {{block}}: %w", errUnsupported)
	}
	if err := check(t.Root); err != nil {
		return nil, err
	}
	return t, nil
}

// check walks the tree and refuses nodes evalTemplate does not implement.
func check(n parse.Node) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := check(c); err != nil {
				return err
			}
		}
		return nil
	case *parse.TextNode, *parse.CommentNode:
		return nil
	case *parse.ActionNode:
		return checkPipe(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	default:
		return fmt.Errorf("%s: %w", n, errUnsupported)
	}
}

func checkBranch(b *parse.BranchNode) error {
	if err := checkPipe(b.Pipe); err != nil {
		return err
	}
	if err := check(b.List); err != nil {
		return err
	}
	if b.ElseList != nil {
		return check(b.ElseList)
	}
	return nil
}

func checkPipe(p *parse.PipeNode) error {
	if p == nil {
		return nil
	}
	if p.IsAssign {
		return fmt.Errorf("%s (assignment with =): %w", p, errUnsupported)
	}
	for _, c := range p.Cmds {
		for _, a := range c.Args {
			switch a := a.(type) {
			case *parse.PipeNode:
				if err := checkPipe(a); err != nil {
					return err
				}
			case *parse.ChainNode:
				if p, ok := a.Node.(*parse.PipeNode); ok {
					if err := checkPipe(p); err != nil {
						return err
					}
				}
			case *parse.FieldNode, *parse.VariableNode, *parse.DotNode, *parse.IdentifierNode,
				*parse.StringNode, *parse.NumberNode, *parse.BoolNode:
			default:
				return fmt.Errorf("%s: %w", a, errUnsupported)
			}
		}
	}
	return nil
}

// state is one evaluation: the output, the variables in scope, and fd.
type state struct {
	out  strings.Builder
	vars []variable
	fd   func(string) (int, error)
}

type variable struct {
	name  string
	value any
}

// evalTemplate renders t with dot = ls.
func evalTemplate(t *parse.Tree, ls []Listener, fd func(string) (int, error)) (string, error) {
	s := &state{fd: fd, vars: []variable{{"$", ls}}}
	if err := s.walk(ls, t.Root); err != nil {
		return "", err
	}
	return s.out.String(), nil
}

func (s *state) walk(dot any, n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := s.walk(dot, c); err != nil {
				return err
			}
		}
	case *parse.TextNode:
		s.out.Write(n.Text)
	case *parse.CommentNode:
	case *parse.ActionNode:
		// A {{$x := ...}} stays in scope until its enclosing block ends.
		v, err := s.pipe(dot, n.Pipe)
		if err != nil {
			return err
		}
		if len(n.Pipe.Decl) == 0 {
			fmt.Fprint(&s.out, v)
		}
	case *parse.IfNode, *parse.WithNode:
		b := branch(n)
		mark := len(s.vars)
		defer func() { s.vars = s.vars[:mark] }()
		v, err := s.pipe(dot, b.Pipe)
		if err != nil {
			return err
		}
		if !truth(v) {
			if b.ElseList != nil {
				return s.walk(dot, b.ElseList)
			}
			return nil
		}
		if _, ok := n.(*parse.WithNode); ok {
			dot = v
		}
		return s.walk(dot, b.List)
	case *parse.RangeNode:
		return s.walkRange(dot, n)
	default:
		return fmt.Errorf("%s: %w", n, errUnsupported)
	}
	return nil
}

func branch(n parse.Node) *parse.BranchNode {
	if i, ok := n.(*parse.IfNode); ok {
		return &i.BranchNode
	}
	return &n.(*parse.WithNode).BranchNode
}

func (s *state) walkRange(dot any, n *parse.RangeNode) error {
	mark := len(s.vars)
	defer func() { s.vars = s.vars[:mark] }()
	// The range's own declarations are set per element, not from the pipe.
	decl := n.Pipe.Decl
	p := *n.Pipe
	p.Decl = nil
	v, err := s.pipe(dot, &p)
	if err != nil {
		return err
	}
	var items []any
	switch v := v.(type) {
	case []Listener:
		for _, l := range v {
			items = append(items, l)
		}
	case int:
		for i := range v {
			items = append(items, i)
		}
	default:
		return fmt.Errorf("range can't iterate over %v", v)
	}
	if len(items) == 0 {
		if n.ElseList != nil {
			return s.walk(dot, n.ElseList)
		}
		return nil
	}
	for i, it := range items {
		s.vars = s.vars[:mark]
		switch len(decl) {
		case 1:
			s.vars = append(s.vars, variable{decl[0].Ident[0], it})
		case 2:
			s.vars = append(s.vars, variable{decl[0].Ident[0], i}, variable{decl[1].Ident[0], it})
		}
		if err := s.walk(it, n.List); err != nil {
			return err
		}
	}
	return nil
}

// pipe evaluates a pipeline: each command's result is the last argument of
// the next; declared variables get the final value.
func (s *state) pipe(dot any, p *parse.PipeNode) (any, error) {
	var v any
	for i, c := range p.Cmds {
		var final []any
		if i > 0 {
			final = []any{v}
		}
		var err error
		if v, err = s.command(dot, c, final); err != nil {
			return nil, err
		}
	}
	for _, d := range p.Decl {
		s.vars = append(s.vars, variable{d.Ident[0], v})
	}
	return v, nil
}

func (s *state) command(dot any, c *parse.CommandNode, final []any) (any, error) {
	first := c.Args[0]
	if id, ok := first.(*parse.IdentifierNode); ok {
		args := make([]any, 0, len(c.Args)-1+len(final))
		for _, a := range c.Args[1:] {
			v, err := s.arg(dot, a)
			if err != nil {
				return nil, err
			}
			args = append(args, v)
		}
		return call(s, id.Ident, append(args, final...))
	}
	if len(c.Args) > 1 || len(final) > 0 {
		return nil, fmt.Errorf("can't give argument to non-function %s", first)
	}
	return s.arg(dot, first)
}

func (s *state) arg(dot any, n parse.Node) (any, error) {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot, nil
	case *parse.FieldNode:
		return fields(dot, n.Ident)
	case *parse.VariableNode:
		v, err := s.variable(n.Ident[0])
		if err != nil {
			return nil, err
		}
		return fields(v, n.Ident[1:])
	case *parse.ChainNode:
		v, err := s.arg(dot, n.Node)
		if err != nil {
			return nil, err
		}
		return fields(v, n.Field)
	case *parse.PipeNode:
		return s.pipe(dot, n)
	case *parse.StringNode:
		return n.Text, nil
	case *parse.BoolNode:
		return n.True, nil
	case *parse.NumberNode:
		if !n.IsInt {
			return nil, fmt.Errorf("%s: only integers: %w", n, errUnsupported)
		}
		return int(n.Int64), nil
	case *parse.IdentifierNode:
		return call(s, n.Ident, nil)
	default:
		return nil, fmt.Errorf("%s: %w", n, errUnsupported)
	}
}

func (s *state) variable(name string) (any, error) {
	for i := len(s.vars) - 1; i >= 0; i-- {
		if s.vars[i].name == name {
			return s.vars[i].value, nil
		}
	}
	return nil, fmt.Errorf("undefined variable: %s", name)
}

// fields follows .A.B on v; only a Listener has fields.
func fields(v any, names []string) (any, error) {
	for _, f := range names {
		l, ok := v.(Listener)
		if !ok {
			return nil, fmt.Errorf("can't evaluate field %s in type %T", f, v)
		}
		switch f {
		case "FD":
			v = l.FD
		case "Name":
			v = l.Name
		case "Addr":
			v = l.Addr
		default:
			return nil, fmt.Errorf("can't evaluate field %s in type %T", f, v)
		}
	}
	return v, nil
}

func call(s *state, name string, args []any) (any, error) {
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("wrong number of args for %s: want %d got %d", name, n, len(args))
		}
		return nil
	}
	switch name {
	case "fd":
		if err := want(1); err != nil {
			return nil, err
		}
		n, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("fd: want a listener name, got %v", args[0])
		}
		fd, err := s.fd(n)
		if err != nil {
			return nil, fmt.Errorf("error calling fd: %w", err)
		}
		return fd, nil
	case "index":
		if err := want(2); err != nil {
			return nil, err
		}
		ls, ok1 := args[0].([]Listener)
		i, ok2 := args[1].(int)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("index: want index LISTENERS N, got %v %v", args[0], args[1])
		}
		if i < 0 || i >= len(ls) {
			return nil, fmt.Errorf("error calling index: index out of range: %d", i)
		}
		return ls[i], nil
	case "len":
		if err := want(1); err != nil {
			return nil, err
		}
		switch v := args[0].(type) {
		case []Listener:
			return len(v), nil
		case string:
			return len(v), nil
		}
		return nil, fmt.Errorf("len of %v", args[0])
	case "print":
		return fmt.Sprint(args...), nil
	case "printf":
		if len(args) == 0 {
			return nil, fmt.Errorf("printf: want a format")
		}
		f, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("printf: format %v is not a string", args[0])
		}
		return fmt.Sprintf(f, args[1:]...), nil
	case "eq", "ne":
		if err := want(2); err != nil {
			return nil, err
		}
		a, b := args[0], args[1]
		if _, ok := a.(Listener); ok {
			return nil, fmt.Errorf("%s: can't compare listeners", name)
		}
		if _, ok := a.([]Listener); ok {
			return nil, fmt.Errorf("%s: can't compare lists", name)
		}
		if _, ok := b.([]Listener); ok {
			return nil, fmt.Errorf("%s: can't compare lists", name)
		}
		return (a == b) == (name == "eq"), nil
	case "not":
		if err := want(1); err != nil {
			return nil, err
		}
		return !truth(args[0]), nil
	case "and", "or":
		if len(args) == 0 {
			return nil, fmt.Errorf("%s: want arguments", name)
		}
		// Go's templates return the first falsy (and) or truthy (or) argument.
		for _, a := range args[:len(args)-1] {
			if truth(a) != (name == "and") {
				return a, nil
			}
		}
		return args[len(args)-1], nil
	}
	return nil, fmt.Errorf("function %q not defined", name)
}

// truth is text/template's: false, 0, "" and an empty list are false.
func truth(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case int:
		return v != 0
	case string:
		return v != ""
	case []Listener:
		return len(v) > 0
	}
	return true
}

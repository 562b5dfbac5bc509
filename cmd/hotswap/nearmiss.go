package main

import (
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
)

// nearMissSubcommand refuses `hotswap sawp`: a first word that is neither a
// path nor an executable on $PATH, within two typos of a subcommand, is a
// mistyped subcommand, not a server to run (which would only fail with
// "not found", exit 127, after hotswap set up everything). After `--`
// (`hotswap -- sawp`) the word is always the command, as documented in
// `hotswap --help`.
func nearMissSubcommand(root *cobra.Command, args []string) error {
	if len(args) == 0 || root.Flags().ArgsLenAtDash() == 0 {
		return nil
	}
	word := args[0]
	if strings.Contains(word, "/") {
		return nil
	}
	if _, err := exec.LookPath(word); err == nil {
		return nil
	}
	best, bestD := "", 3
	for _, c := range root.Commands() {
		if c.Hidden || !c.IsAvailableCommand() && c.Name() != "help" {
			continue
		}
		if d := editDistance(word, c.Name()); d < bestD {
			best, bestD = c.Name(), d
		}
	}
	if best == "" {
		return nil
	}
	return usageErr("unknown command %q: did you mean `hotswap %s`? (to run a program named %s, give its path or use `hotswap -- %s`)", word, best, word, word)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

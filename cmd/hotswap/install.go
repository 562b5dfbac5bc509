package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newInstallCommand copies this binary into a directory. A FROM-scratch
// hotswap image has no cp, so the chart's init container runs
// `/hotswap install /opt/hotswap` to put hotswap on a shared emptyDir for an
// application image that does not ship it.
func newInstallCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "install DIR",
		Short: "Copy hotswap into DIR (as DIR/hotswap, plus DIR/kill) for an init container to share",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst, err := installSelf(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s\n", dst)
			return nil
		},
	}
}

func installSelf(dir string) (string, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("install: open own binary: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	// Write beside the target and rename, so a reader never sees half a file.
	tmp, err := os.CreateTemp(dir, ".hotswap-*")
	if err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install: copy: %w", err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	dst := filepath.Join(dir, "hotswap")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	kill := filepath.Join(dir, "kill")
	_ = os.Remove(kill)
	if err := os.Symlink("hotswap", kill); err != nil {
		return "", fmt.Errorf("install: kill link: %w", err)
	}
	return dst, nil
}

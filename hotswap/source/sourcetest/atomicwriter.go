package sourcetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is one key of a ConfigMap or Secret volume.
type File struct {
	Data []byte
	// Mode is the file's mode (the volume's defaultMode; 0644 when zero).
	Mode os.FileMode
}

// Names the kubelet uses in a volume directory.
const (
	DataDirName    = "..data"
	newDataDirName = "..data_tmp"
)

// WriteAtomic updates dir with payload (key -> file) exactly as the
// kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) does:
//
//  1. if the payload equals what ..data shows, nothing is written;
//  2. a new timestamped directory ..2006_01_02_15_04_05.NNNN is created
//     (os.MkdirTemp, mode 0755) and the payload written into it;
//  3. each top-level key gets a user-visible symlink KEY -> ..data/KEY if it
//     has none yet;
//  4. a symlink ..data_tmp -> the new directory is created and renamed over
//     ..data (the one atomic step: readers see the old or the new payload);
//  5. user-visible symlinks of keys no longer in the payload are removed;
//  6. the old timestamped directory is removed.
//
// It returns the new timestamped directory ("" if nothing changed).
func WriteAtomic(dir string, payload map[string]File) (string, error) {
	for k := range payload {
		if k == "" || strings.HasPrefix(k, "..") || filepath.IsAbs(k) || strings.Contains(k, "/../") {
			return "", fmt.Errorf("atomic writer: invalid key %q", k)
		}
	}
	dataLink := filepath.Join(dir, DataDirName)
	oldTsName, err := os.Readlink(dataLink)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("atomic writer: read %s: %w", dataLink, err)
	}
	oldTsDir := ""
	if oldTsName != "" {
		oldTsDir = filepath.Join(dir, oldTsName)
		if same(oldTsDir, payload) {
			return "", nil
		}
	}
	oldKeys := userVisible(dir)

	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return "", fmt.Errorf("atomic writer: %w", err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return "", fmt.Errorf("atomic writer: %w", err)
	}
	for k, f := range payload {
		p := filepath.Join(tsDir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", fmt.Errorf("atomic writer: %w", err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, f.Data, mode); err != nil {
			return "", fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return "", fmt.Errorf("atomic writer: %w", err)
		}
	}
	for k := range payload {
		top, _, _ := strings.Cut(k, "/")
		visible := filepath.Join(dir, top)
		if _, err := os.Lstat(visible); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join(DataDirName, top), visible); err != nil {
				return "", fmt.Errorf("atomic writer: %w", err)
			}
		}
	}
	tmpLink := filepath.Join(dir, newDataDirName)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return "", fmt.Errorf("atomic writer: %w", err)
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		os.Remove(tmpLink)
		return "", fmt.Errorf("atomic writer: %w", err)
	}
	for _, k := range oldKeys {
		if !hasTop(payload, k) {
			if err := os.Remove(filepath.Join(dir, k)); err != nil {
				return "", fmt.Errorf("atomic writer: %w", err)
			}
		}
	}
	if oldTsDir != "" {
		if err := os.RemoveAll(oldTsDir); err != nil {
			return "", fmt.Errorf("atomic writer: %w", err)
		}
	}
	return tsDir, nil
}

// same reports whether tsDir holds exactly payload.
func same(tsDir string, payload map[string]File) bool {
	n := 0
	err := filepath.WalkDir(tsDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(tsDir, p)
		f, ok := payload[rel]
		if !ok {
			return fmt.Errorf("extra")
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			return fmt.Errorf("differs")
		}
		return nil
	})
	return err == nil && n == len(payload)
}

// userVisible lists the top-level symlinks into ..data.
func userVisible(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(t, DataDirName+"/") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

func hasTop(payload map[string]File, top string) bool {
	for k := range payload {
		if t, _, _ := strings.Cut(k, "/"); t == top {
			return true
		}
	}
	return false
}

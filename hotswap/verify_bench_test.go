package hotswap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkVerify30MB is what verification costs a swap for a 30 MB server
// binary: with a sha256 pin (the whole file is read and hashed) and without
// (headers, owners and directories only). Compare with main to see what
// pinning the open file added:
//
//	go test -run XXX -bench Verify30MB -benchtime 20x ./hotswap/
func BenchmarkVerify30MB(b *testing.B) {
	dir := b.TempDir()
	native, err := os.ReadFile("/bin/true")
	if err != nil {
		b.Skip("no /bin/true to grow into a 30 MB ELF binary")
	}
	// A real ELF binary with 30 MB after its segments: a large Go server's size.
	content := append(native, make([]byte, 30<<20-len(native))...)
	path := filepath.Join(dir, "server")
	if err := os.WriteFile(path, content, 0o755); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(content)
	v, err := NewVerifier(VerifyOptions{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		rel  Release
	}{
		{"pinned", Release{Path: path, SHA256: hex.EncodeToString(sum[:])}},
		{"unpinned", Release{Path: path}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(content)))
			for b.Loop() {
				if err := v.Verify(context.Background(), bc.rel); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Package source finds new releases and offers them to the swap engine.
//
// It owns the release sources of hotswap: a watched path on a volume
// (Watch: a binary or a "current" symlink), a manifest file (ManifestFile: a
// YAML release description, typically a mounted ConfigMap key), and the
// manifest format itself (ParseManifest). The ConfigMap-through-the-API
// source lives in the configmap subpackage, so a binary without it links no
// client-go.
//
// Every source watches a directory, never a file: the kubelet updates a
// ConfigMap or Secret volume by renaming a "..data" symlink, editors and
// copy tools replace files by rename, and "ln -sfn" flips a symlink by
// rename; an inotify watch on the file itself would see none of these. A
// change is offered only once the file has been unchanged (identity, size,
// mtime) for a settle interval and hashed, so a binary still being copied
// is not offered; the engine verifies it again before it starts.
//
// A source must never start, stop or wait for a process, nor decide whether
// a release is good: it offers (hotswap.Engine.Offer), the engine dedupes
// and the verifier decides. A source that loses its file keeps quiet
// towards the engine: the serving generation keeps serving.
package source

// Package shim runs hotswap's exec shim (see activation.RunShimIfRequested)
// from a package initializer, so that a binary which links heavy packages
// (client-go registers its API types at init) does not pay for their
// initialization on every child start. Import it for its side effect from
// package main:
//
//	import _ "github.com/hotswap-dev/hotswap/reuseport/shim"
//
// It depends only on a few standard packages and golang.org/x/sys/unix, so
// Go initializes it early: before net/http, client-go and protobuf. main
// should still call activation.RunShimIfRequested first thing: it costs
// nothing and keeps the shim working if this import is removed.
//
// It owns nothing else and, like reuseport, never imports Kubernetes code.
package shim

import "github.com/hotswap-dev/hotswap/reuseport/internal/execshim"

func init() { execshim.RunIfRequested() }

//go:build !typedclient

package main

func typedClientset() {}

// Package listenenv presents the listening sockets hotswap passes to each
// generation (fd 3.., systemd's LISTEN_FDS protocol) in the form a server
// expects when it does not read LISTEN_FDS itself: nginx wants
// NGINX="3;4;", others an fd number in a variable of their own.
//
// A --listen-env NAME=TEMPLATE renders a Go text/template once, at start:
// the descriptor numbers are fixed by the order of --listen (the first is
// fd 3), so every generation gets the same value. The template sees the
// listeners in --listen order, each with .FD, .Name and .Addr, and a
// function fd NAME:
//
//	NGINX={{range .}}{{.FD}};{{end}}     →  NGINX=3;4;
//	APP_FD={{fd "http"}}                 →  APP_FD=3
//
// It owns parsing, checking and rendering those variables, and nothing
// else: it must never open, bind or pass a socket, and never set a variable
// hotswap sets per generation (LISTEN_*, NOTIFY_SOCKET, HOTSWAP_*).
package listenenv

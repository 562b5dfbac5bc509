module github.com/hotswap-dev/hotswap/hack/tableflip

go 1.26.0

replace github.com/hotswap-dev/hotswap => ../..

require (
	github.com/cloudflare/tableflip v1.2.3
	github.com/hotswap-dev/hotswap v0.0.0-00010101000000-000000000000
)

require golang.org/x/sys v0.50.0 // indirect

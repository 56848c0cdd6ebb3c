//go:build tools

// Package tools pins Kubo (the IPFS daemon the node runs) by this module's go.mod and go.sum,
// so `go build github.com/ipfs/kubo/cmd/ipfs` here builds one exact tree of dependencies.
package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"

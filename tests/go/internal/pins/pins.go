// Package pins keeps upstream modules that the Rust tests read (but no Go program imports yet)
// pinned in go.mod: the wire-identity test compiles spire-plugin-sdk's protos from the module
// cache at exactly the version required here.
package pins

import (
	_ "github.com/spiffe/spire-plugin-sdk/pluginsdk"
)

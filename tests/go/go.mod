module github.com/example/spire-plugin-rs/tests/go

go 1.24

require (
	github.com/hashicorp/go-plugin v1.8.0
	github.com/spiffe/spire-plugin-sdk v1.15.2
)

// Errors shared by the interop service implementations.
package echo

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errUnimplemented = status.Error(codes.Unimplemented, "not served on brokered connections")

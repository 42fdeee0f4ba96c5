// Package echo is the interop test service shared by our Go host and Go plugin programs.
//
// The service `interop.v1.Echo` is declared by hand with grpc.ServiceDesc and uses only
// well-known wrapper messages, so no Go code generation is needed. The Rust side declares the
// same service in tests/fixtures/interop/interop/v1/echo.proto.
package echo

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the full gRPC name of the interop service.
const ServiceName = "interop.v1.Echo"

// Server is what an implementation of interop.v1.Echo provides.
type Server interface {
	// Say answers "echo: " + text.
	Say(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	// Print writes "stdout:"+text to stdout and "stderr:"+text to stderr.
	Print(ctx context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error)
	// Log emits one log line per level with the text as message and fields.
	Log(ctx context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error)
	// CallBack dials broker ID `id`, calls Say("callback") there and returns the answer.
	CallBack(ctx context.Context, in *wrapperspb.UInt32Value) (*wrapperspb.StringValue, error)
	// Serve accepts a fresh broker ID, serves Echo on it and returns the ID; it stops the
	// server the previous Serve started.
	Serve(ctx context.Context, in *emptypb.Empty) (*wrapperspb.UInt32Value, error)
	// Crash makes the process exit at once with status 3.
	Crash(ctx context.Context, in *emptypb.Empty) (*emptypb.Empty, error)
}

func unary[In any, Out any](call func(Server, context.Context, *In) (*Out, error), method string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(In)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return call(srv.(Server), ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ServiceName + "/" + method}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return call(srv.(Server), ctx, req.(*In))
			})
		},
	}
}

var desc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{
		unary(Server.Say, "Say"),
		unary(Server.Print, "Print"),
		unary(Server.Log, "Log"),
		unary(Server.CallBack, "CallBack"),
		unary(Server.Serve, "Serve"),
		unary(Server.Crash, "Crash"),
	},
	Metadata: "interop/v1/echo.proto",
}

// Register adds an implementation to a gRPC server.
func Register(s *grpc.Server, impl Server) { s.RegisterService(&desc, impl) }

// Client calls interop.v1.Echo on a connection.
type Client struct{ Conn *grpc.ClientConn }

func (c Client) call(ctx context.Context, method string, in, out any) error {
	return c.Conn.Invoke(ctx, "/"+ServiceName+"/"+method, in, out)
}

// Say calls Echo.Say.
func (c Client) Say(ctx context.Context, text string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.call(ctx, "Say", wrapperspb.String(text), out)
	return out.GetValue(), err
}

// Print calls Echo.Print.
func (c Client) Print(ctx context.Context, text string) error {
	return c.call(ctx, "Print", wrapperspb.String(text), new(emptypb.Empty))
}

// Log calls Echo.Log.
func (c Client) Log(ctx context.Context, text string) error {
	return c.call(ctx, "Log", wrapperspb.String(text), new(emptypb.Empty))
}

// CallBack calls Echo.CallBack.
func (c Client) CallBack(ctx context.Context, id uint32) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.call(ctx, "CallBack", wrapperspb.UInt32(id), out)
	return out.GetValue(), err
}

// Serve calls Echo.Serve.
func (c Client) Serve(ctx context.Context) (uint32, error) {
	out := new(wrapperspb.UInt32Value)
	err := c.call(ctx, "Serve", new(emptypb.Empty), out)
	return out.GetValue(), err
}

// Crash calls Echo.Crash.
func (c Client) Crash(ctx context.Context) error {
	return c.call(ctx, "Crash", new(emptypb.Empty), new(emptypb.Empty))
}

// Responder answers Say with "<prefix>echo: <text>"; the other methods are unimplemented.
// It is what each side serves on brokered connections.
type Responder struct{ Prefix string }

// Say answers with the prefix and the text.
func (r Responder) Say(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(r.Prefix + "echo: " + in.GetValue()), nil
}

// Print is not served on brokered connections.
func (Responder) Print(context.Context, *wrapperspb.StringValue) (*emptypb.Empty, error) {
	return nil, errUnimplemented
}

// Log is not served on brokered connections.
func (Responder) Log(context.Context, *wrapperspb.StringValue) (*emptypb.Empty, error) {
	return nil, errUnimplemented
}

// CallBack is not served on brokered connections.
func (Responder) CallBack(context.Context, *wrapperspb.UInt32Value) (*wrapperspb.StringValue, error) {
	return nil, errUnimplemented
}

// Serve is not served on brokered connections.
func (Responder) Serve(context.Context, *emptypb.Empty) (*wrapperspb.UInt32Value, error) {
	return nil, errUnimplemented
}

// Crash is not served on brokered connections.
func (Responder) Crash(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return nil, errUnimplemented
}

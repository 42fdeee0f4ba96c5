// Command goplugin is a go-plugin plugin serving interop.v1.Echo, for the Rust host tests.
//
// Flags choose the protocol versions it serves and a misbehaviour for bad-input tests:
//
//	-versions 1,2          versions served (each serves the same "echo" plugin)
//	-mode normal           serve normally
//	-mode exit             exit with status 2 before the handshake
//	-mode hang             never print a handshake
//	-mode garbage          print a garbage handshake line, then wait
//	-mode truncated        print a handshake line with too few fields, then wait
//	-mode noise            print a line on stdout before the handshake
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/example/spire-plugin-rs/tests/go/internal/echo"
)

// Handshake is shared with the Rust host tests.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "INTEROP_PLUGIN",
	MagicCookieValue: "interop-echo",
}

type server struct {
	broker *plugin.GRPCBroker
	logger hclog.Logger

	mu sync.Mutex
	// served yields the brokered server the last Serve started, once AcceptAndServe built it.
	served chan *grpc.Server
}

func (s *server) Say(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

func (s *server) Print(_ context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error) {
	fmt.Fprintln(os.Stdout, "stdout:"+in.GetValue())
	fmt.Fprintln(os.Stderr, "stderr:"+in.GetValue())
	return &emptypb.Empty{}, nil
}

func (s *server) Log(_ context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error) {
	msg := in.GetValue()
	s.logger.Trace(msg, "answer", 42, "plugin_side", "go")
	s.logger.Debug(msg, "answer", 42, "plugin_side", "go")
	s.logger.Info(msg, "answer", 42, "plugin_side", "go")
	s.logger.Warn(msg, "answer", 42, "plugin_side", "go")
	s.logger.Error(msg, "answer", 42, "plugin_side", "go")
	return &emptypb.Empty{}, nil
}

func (s *server) CallBack(ctx context.Context, in *wrapperspb.UInt32Value) (*wrapperspb.StringValue, error) {
	conn, err := s.broker.Dial(in.GetValue())
	if err != nil {
		return nil, fmt.Errorf("dial broker id %d: %w", in.GetValue(), err)
	}
	defer conn.Close()
	answer, err := echo.Client{Conn: conn}.Say(ctx, "callback")
	if err != nil {
		return nil, err
	}
	return wrapperspb.String(answer), nil
}

func (s *server) Serve(context.Context, *emptypb.Empty) (*wrapperspb.UInt32Value, error) {
	id := s.broker.NextId()
	served := make(chan *grpc.Server, 1)
	go s.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		srv := grpc.NewServer(opts...)
		echo.Register(srv, echo.Responder{Prefix: "plugin-"})
		served <- srv
		return srv
	})
	// As go-plugin's callers do: the previous brokered server is stopped, which ends its
	// AcceptAndServe and closes its listener.
	s.mu.Lock()
	previous := s.served
	s.served = served
	s.mu.Unlock()
	if previous != nil {
		(<-previous).Stop()
	}
	return wrapperspb.UInt32(id), nil
}

func (s *server) Crash(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	os.Exit(3)
	return nil, nil
}

type echoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	logger hclog.Logger
}

func (p *echoPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	echo.Register(s, &server{broker: broker, logger: p.logger})
	return nil
}

func (p *echoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return echo.Client{Conn: conn}, nil
}

func main() {
	versions := flag.String("versions", "1", "comma-separated protocol versions to serve")
	mode := flag.String("mode", "normal", "normal, exit, hang, garbage, truncated or noise")
	flag.Parse()

	switch *mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "goplugin: exiting before the handshake as asked")
		os.Exit(2)
	case "hang":
		select {}
	case "garbage":
		fmt.Println("this is not a handshake")
		select {}
	case "truncated":
		fmt.Println("1|1|unix")
		select {}
	case "noise":
		fmt.Println("hello from a chatty plugin")
	}

	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	sets := map[int]plugin.PluginSet{}
	for _, part := range strings.Split(*versions, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			fmt.Fprintf(os.Stderr, "goplugin: bad -versions %q\n", *versions)
			os.Exit(2)
		}
		sets[v] = plugin.PluginSet{"echo": &echoPlugin{logger: logger}}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: sets,
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           logger,
	})
}

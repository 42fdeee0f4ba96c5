// Command gohost is a go-plugin host that launches one plugin binary (written with our Rust SDK
// in the tests) and checks it the way a real Go host would use it. It prints one JSON report on
// stdout and exits 0 only when every check passed.
//
//	gohost -plugin PATH [-args "a b"] [-automtls] [-mux] [-versions 1,2] [-expect-version N] [-log FILE] [-hold D]
//
// With -mux the report has a "multiplexed" check: the host really ran a yamux session and
// logged no yamux warning or error. -log writes the host's hclog output to FILE. -hold idles for
// D between the first call and the rest (to let keepalives and pings run; not used in tests).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/example/spire-plugin-rs/tests/go/internal/echo"
)

// Handshake must match the Rust interop plugin's.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "INTEROP_PLUGIN",
	MagicCookieValue: "interop-echo",
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

type report struct {
	Version int     `json:"negotiated_version"`
	Checks  []check `json:"checks"`
}

func (r *report) add(name string, err error) bool {
	c := check{Name: name, OK: err == nil}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

type echoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

type dispensed struct {
	client echo.Client
	broker *plugin.GRPCBroker
}

func (echoPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve the echo plugin")
}

func (echoPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return dispensed{client: echo.Client{Conn: conn}, broker: broker}, nil
}

// syncBuffer is a goroutine-safe buffer for the plugin's forwarded stdio and the host log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond every 20 ms for up to 10 s; data arrives asynchronously over streams.
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("timed out waiting for %s", what)
}

// logLines returns the host log's JSON entries whose @message is msg.
func logLines(log *syncBuffer, msg string) []map[string]any {
	var out []map[string]any
	scanner := bufio.NewScanner(strings.NewReader(log.String()))
	scanner.Buffer(make([]byte, 1024*1024), 1024*1024)
	for scanner.Scan() {
		var entry map[string]any
		if json.Unmarshal(scanner.Bytes(), &entry) == nil && entry["@message"] == msg {
			out = append(out, entry)
		}
	}
	return out
}

func checkLogs(log *syncBuffer, msg string) error {
	want := []string{"trace", "debug", "info", "warn", "error"}
	if err := waitFor("plugin log lines", func() bool { return len(logLines(log, msg)) >= len(want) }); err != nil {
		return fmt.Errorf("%w; host log:\n%s", err, log.String())
	}
	seen := map[string]bool{}
	for _, entry := range logLines(log, msg) {
		level, _ := entry["@level"].(string)
		seen[level] = true
		if entry["answer"] != float64(42) || entry["plugin_side"] != "rust" {
			return fmt.Errorf("log entry at %s lacks fields answer=42 plugin_side=rust: %v", level, entry)
		}
	}
	for _, level := range want {
		if !seen[level] {
			return fmt.Errorf("no %s entry for %q; seen %v", level, msg, seen)
		}
	}
	return nil
}

// checkMultiplexed confirms from the host log that go-plugin connected through a yamux client
// session and that neither side's yamux (the host's, or the plugin's as forwarded through its
// log) reported anything at warn level or above.
func checkMultiplexed(log *syncBuffer) error {
	if len(logLines(log, "client muxer connected")) == 0 {
		return fmt.Errorf("the host log has no \"client muxer connected\"; host log:\n%s", log.String())
	}
	scanner := bufio.NewScanner(strings.NewReader(log.String()))
	scanner.Buffer(make([]byte, 1024*1024), 1024*1024)
	for scanner.Scan() {
		var entry map[string]any
		if json.Unmarshal(scanner.Bytes(), &entry) != nil {
			continue
		}
		name, _ := entry["@module"].(string)
		target, _ := entry["log.target"].(string)
		level, _ := entry["@level"].(string)
		fromYamux := strings.Contains(name, "yamux") || strings.HasPrefix(target, "yamux")
		if fromYamux && (level == "warn" || level == "error") {
			return fmt.Errorf("yamux logged at %s: %v", level, entry["@message"])
		}
	}
	return nil
}

// checkPluginStops calls Serve again and checks that the server of the first Serve is gone
// (a call on its connection fails) while the new one answers.
func checkPluginStops(ctx context.Context, d dispensed, first *grpc.ClientConn) error {
	id, err := d.client.Serve(ctx)
	if err != nil {
		return fmt.Errorf("second Serve: %w", err)
	}
	stale, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if answer, err := (echo.Client{Conn: first}).Say(stale, "stale"); err == nil {
		return fmt.Errorf("the stopped server still answered %q", answer)
	}
	conn, err := d.broker.Dial(id)
	if err != nil {
		return fmt.Errorf("dialling the second server: %w", err)
	}
	defer conn.Close()
	answer, err := echo.Client{Conn: conn}.Say(ctx, "y")
	if err == nil && answer != "plugin-echo: y" {
		err = fmt.Errorf("second brokered Say answered %q", answer)
	}
	return err
}

func main() {
	path := flag.String("plugin", "", "plugin binary")
	args := flag.String("args", "", "space-separated plugin arguments")
	autoMTLS := flag.Bool("automtls", false, "enable AutoMTLS")
	mux := flag.Bool("mux", false, "enable GRPCBrokerMultiplex")
	versions := flag.String("versions", "1", "comma-separated protocol versions the host accepts")
	expect := flag.Int("expect-version", 1, "the version negotiation must choose")
	logFile := flag.String("log", "", "write the host log to this file")
	hold := flag.Duration("hold", 0, "idle this long after the first call")
	flag.Parse()

	sets := map[int]plugin.PluginSet{}
	for _, part := range strings.Split(*versions, ",") {
		v, err := strconv.Atoi(part)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gohost: bad -versions %q\n", *versions)
			os.Exit(2)
		}
		sets[v] = plugin.PluginSet{"echo": echoPlugin{}}
	}
	var pluginArgs []string
	if *args != "" {
		pluginArgs = strings.Fields(*args)
	}

	hostLog := &syncBuffer{}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:     Handshake,
		VersionedPlugins:    sets,
		Cmd:                 exec.Command(*path, pluginArgs...),
		AllowedProtocols:    []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:            *autoMTLS,
		GRPCBrokerMultiplex: *mux,
		SyncStdout:          stdout,
		SyncStderr:          stderr,
		Logger:              hclog.New(&hclog.LoggerOptions{Name: "gohost", Output: hostLog, JSONFormat: true, Level: hclog.Trace}),
	})
	defer client.Kill()

	r := &report{}
	finish := func() {
		if *logFile != "" {
			_ = os.WriteFile(*logFile, []byte(hostLog.String()), 0o600)
		}
		_ = json.NewEncoder(os.Stdout).Encode(r)
		for _, c := range r.Checks {
			if !c.OK {
				os.Exit(1)
			}
		}
		os.Exit(0)
	}

	rpc, err := client.Client()
	if !r.add("handshake", err) {
		client.Kill()
		finish()
	}
	r.Version = client.NegotiatedVersion()
	if r.Version != *expect {
		r.add("negotiated_version", fmt.Errorf("negotiated %d, want %d", r.Version, *expect))
	} else {
		r.add("negotiated_version", nil)
	}
	r.add("ping", rpc.Ping())

	raw, err := rpc.Dispense("echo")
	if !r.add("dispense", err) {
		client.Kill()
		finish()
	}
	d := raw.(dispensed)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+*hold)
	defer cancel()

	answer, err := d.client.Say(ctx, "hello")
	if err == nil && answer != "echo: hello" {
		err = fmt.Errorf("Say answered %q", answer)
	}
	r.add("call", err)
	time.Sleep(*hold)

	// 3 MiB each way: far past a yamux stream's 256 KiB window, so flow control is exercised.
	big := strings.Repeat("y", 3<<20)
	answer, err = d.client.Say(ctx, big)
	if err == nil && answer != "echo: "+big {
		err = fmt.Errorf("Say of 3 MiB answered %d bytes", len(answer))
	}
	r.add("large_call", err)

	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	err = d.client.Print(ctx, marker)
	if err == nil {
		err = waitFor("forwarded stdout and stderr", func() bool {
			return strings.Contains(stdout.String(), "stdout:"+marker) && strings.Contains(stderr.String(), "stderr:"+marker)
		})
	}
	if err != nil {
		err = fmt.Errorf("%w (stdout %q, stderr %q)", err, stdout.String(), stderr.String())
	}
	r.add("stdio", err)

	err = d.client.Log(ctx, "log-"+marker)
	if err == nil {
		err = checkLogs(hostLog, "log-"+marker)
	}
	r.add("logs", err)

	// Host accepts, plugin dials.
	id := d.broker.NextId()
	go d.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		echo.Register(s, echo.Responder{Prefix: "host-"})
		return s
	})
	answer, err = d.client.CallBack(ctx, id)
	if err == nil && answer != "host-echo: callback" {
		err = fmt.Errorf("CallBack answered %q", answer)
	}
	r.add("broker_host_accepts", err)

	// Plugin accepts, host dials.
	var first *grpc.ClientConn
	id, err = d.client.Serve(ctx)
	if err == nil {
		first, err = d.broker.Dial(id)
		if err == nil {
			answer, err = echo.Client{Conn: first}.Say(ctx, "x")
			if err == nil && answer != "plugin-echo: x" {
				err = fmt.Errorf("brokered Say answered %q", answer)
			}
		}
	}
	r.add("broker_plugin_accepts", err)

	// The plugin stops a brokered server: the next Serve stops the first one, so the first
	// connection fails from then on while the new ID serves.
	if first != nil {
		err = checkPluginStops(ctx, d, first)
		first.Close()
		r.add("broker_plugin_stops", err)
	}

	// Shutdown: the plugin must exit by itself within go-plugin's 2 s grace period and leave
	// no socket behind.
	reattach := client.ReattachConfig()
	client.Kill()
	err = nil
	if !client.Exited() {
		err = errors.New("plugin process still running after Kill")
	} else if strings.Contains(hostLog.String(), "plugin failed to exit gracefully") {
		err = errors.New("plugin did not exit within the grace period and was killed")
	} else if reattach != nil && syscall.Kill(reattach.Pid, 0) == nil {
		err = fmt.Errorf("process %d still exists", reattach.Pid)
	}
	r.add("shutdown", err)
	if *mux {
		r.add("multiplexed", checkMultiplexed(hostLog))
	}
	if reattach != nil && reattach.Addr != nil && reattach.Addr.Network() == "unix" {
		_, statErr := os.Stat(reattach.Addr.String())
		if statErr == nil {
			r.add("socket_removed", fmt.Errorf("socket %s left behind", reattach.Addr.String()))
		} else {
			r.add("socket_removed", nil)
		}
	}
	finish()
}

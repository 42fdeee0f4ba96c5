// Command spirehost is a SPIRE-style go-plugin host for the Rust SPIRE plugin tests: it loads
// one plugin binary the way SPIRE's catalog does (cookie key = value = plugin type, gRPC only,
// no AutoMTLS, host services served on broker ID 1 at dispense, Init, Configure), drives the
// plugin's RPCs for one scenario, then Deinit and Kill. It prints one JSON report on stdout and
// exits 0 only when every check passed.
//
//	spirehost -spec '{"plugin":PATH,"scenario":"nodeattestor","host_services":["metrics"],...}'
//
// Scenarios: nodeattestor (server NodeAttestor), upstreamauthority (server UpstreamAuthority),
// keymanager (server KeyManager), workloadattestor (agent WorkloadAttestor). Each has a fixed
// configuration in SPIRE's HCL v1 printer style and fixed expected answers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/spiffe/spire-plugin-sdk/private"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	agentstorev1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/server/agentstore/v1"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	upstreamauthorityv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/upstreamauthority/v1"
	typesv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/types"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

const configName = "spire.service.common.config.v1.Config"

// badConfig is a configuration the plugin must refuse with InvalidArgument; the message must
// contain Key and, when Line > 0, "line <Line>".
type badConfig struct {
	HCL  string `json:"hcl"`
	Key  string `json:"key"`
	Line int    `json:"line"`
}

type spec struct {
	Plugin       string      `json:"plugin"`
	Scenario     string      `json:"scenario"`
	HostServices []string    `json:"host_services"`
	TrustDomain  string      `json:"trust_domain"`
	BadConfigs   []badConfig `json:"bad_configs"`
	// When set, Init must fail with FailedPrecondition and a message containing this text.
	ExpectInitError string `json:"expect_init_error"`
}

type scenario struct {
	pluginType  string
	serviceName string
	config      string
	run         func(ctx context.Context, conn *grpc.ClientConn, h *hostServices, r *report)
}

var scenarios = map[string]scenario{
	"nodeattestor": {
		pluginType:  "NodeAttestor",
		serviceName: "spire.plugin.server.nodeattestor.v1.NodeAttestor",
		config:      "\"challenge\" = \"nonce-123\"\n\"secret\" = \"s3cret\"\n\"selectors\" = [\"a:b\", \"c:d\"]\n",
		run:         runNodeAttestor,
	},
	"upstreamauthority": {
		pluginType:  "UpstreamAuthority",
		serviceName: "spire.plugin.server.upstreamauthority.v1.UpstreamAuthority",
		config:      "\"roots\" = [\"root-1\", \"root-2\"]\n\"jwt_key_id\" = \"upstream-kid\"\n",
		run:         runUpstreamAuthority,
	},
	"keymanager": {
		pluginType:  "KeyManager",
		serviceName: "spire.plugin.server.keymanager.v1.KeyManager",
		config:      "\"key_prefix\" = \"km\"\n",
		run:         runKeyManager,
	},
	"workloadattestor": {
		pluginType:  "WorkloadAttestor",
		serviceName: "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor",
		config:      "\"selectors\" = [\"team:blue\", \"env:test\"]\n\"pids\" = {\n  \"42\" = [\"special:yes\"]\n}\n\"not_a_field\" = \"accepted: this plugin allows unknown keys\"\n",
		run:         runWorkloadAttestor,
	},
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

type report struct {
	Checks             []check  `json:"checks"`
	PluginServiceNames []string `json:"plugin_service_names"`
	HostCalls          []string `json:"host_calls"`
}

func (r *report) add(name string, err error) bool {
	c := check{Name: name, OK: err == nil}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

// hostServices records every host-service call the plugin makes.
type hostServices struct {
	offered []string
	mu      sync.Mutex
	calls   []string
}

func (h *hostServices) record(call string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
}

func (h *hostServices) recorded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

type metricsServer struct {
	metricsv1.UnimplementedMetricsServer
	h *hostServices
}

func labels(ls []*metricsv1.Label) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.Name+"="+l.Value)
	}
	return strings.Join(parts, ",")
}

func (m metricsServer) IncrCounter(_ context.Context, req *metricsv1.IncrCounterRequest) (*emptypb.Empty, error) {
	m.h.record(fmt.Sprintf("Metrics.IncrCounter %s %g {%s}", strings.Join(req.Key, "."), req.Val, labels(req.Labels)))
	return &emptypb.Empty{}, nil
}

func (m metricsServer) SetGauge(_ context.Context, req *metricsv1.SetGaugeRequest) (*emptypb.Empty, error) {
	m.h.record(fmt.Sprintf("Metrics.SetGauge %s %g {%s}", strings.Join(req.Key, "."), req.Val, labels(req.Labels)))
	return &emptypb.Empty{}, nil
}

type agentStoreServer struct {
	agentstorev1.UnimplementedAgentStoreServer
	h *hostServices
}

func (a agentStoreServer) GetAgentInfo(_ context.Context, req *agentstorev1.GetAgentInfoRequest) (*agentstorev1.GetAgentInfoResponse, error) {
	a.h.record("AgentStore.GetAgentInfo " + req.AgentId)
	return &agentstorev1.GetAgentInfoResponse{Info: &agentstorev1.AgentInfo{AgentId: req.AgentId}}, nil
}

var hostServiceNames = map[string]string{
	"metrics":    "spire.hostservice.common.metrics.v1.Metrics",
	"agentstore": "spire.hostservice.server.agentstore.v1.AgentStore",
}

// spirePlugin is the go-plugin client side of one SPIRE plugin type.
type spirePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	offered []string
	h       *hostServices
}

type dispensed struct {
	conn       *grpc.ClientConn
	hostServer *grpc.Server
}

func (spirePlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve plugins")
}

// GRPCClient does what SPIRE does at dispense: accept broker ID 1 and serve the host services
// there, in plaintext.
func (p spirePlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	listener, err := broker.Accept(private.HostServiceProviderID)
	if err != nil {
		return nil, fmt.Errorf("accepting the host-service connection: %w", err)
	}
	server := grpc.NewServer()
	for _, name := range p.offered {
		switch name {
		case "metrics":
			metricsv1.RegisterMetricsServer(server, metricsServer{h: p.h})
		case "agentstore":
			agentstorev1.RegisterAgentStoreServer(server, agentStoreServer{h: p.h})
		}
	}
	go func(l net.Listener) { _ = server.Serve(l) }(listener)
	return dispensed{conn: conn, hostServer: server}, nil
}

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

// waitForLog polls the host log every 20 ms for up to 10 s for a plugin line with this
// message at this level: plugin stderr reaches the host log asynchronously.
func waitForLog(log *syncBuffer, msg, level string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		scanner := bufio.NewScanner(strings.NewReader(log.String()))
		scanner.Buffer(make([]byte, 1024*1024), 1024*1024)
		for scanner.Scan() {
			var entry map[string]any
			if json.Unmarshal(scanner.Bytes(), &entry) == nil && entry["@message"] == msg {
				if entry["@level"] != level {
					return fmt.Errorf("%q logged at %v, want %s", msg, entry["@level"], level)
				}
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no plugin log line %q; host log:\n%s", msg, log.String())
}

func expectCode(err error, code codes.Code, contains string) error {
	if err == nil {
		return fmt.Errorf("succeeded; want %s", code)
	}
	st := status.Convert(err)
	if st.Code() != code {
		return fmt.Errorf("code %s (%q); want %s", st.Code(), st.Message(), code)
	}
	if !strings.Contains(st.Message(), contains) {
		return fmt.Errorf("message %q lacks %q", st.Message(), contains)
	}
	return nil
}

func expectEqual(what string, got, want any) error {
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s: got %v, want %v", what, got, want)
	}
	return nil
}

func main() {
	raw := flag.String("spec", "", "the run, as JSON")
	flag.Parse()
	var s spec
	if err := json.Unmarshal([]byte(*raw), &s); err != nil {
		fmt.Fprintf(os.Stderr, "spirehost: bad -spec: %v\n", err)
		os.Exit(2)
	}
	sc, ok := scenarios[s.Scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "spirehost: unknown scenario %q\n", s.Scenario)
		os.Exit(2)
	}
	if s.TrustDomain == "" {
		s.TrustDomain = "example.org"
	}

	h := &hostServices{offered: s.HostServices}
	var offered []string
	for _, name := range s.HostServices {
		full, ok := hostServiceNames[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "spirehost: unknown host service %q\n", name)
			os.Exit(2)
		}
		offered = append(offered, full)
	}

	hostLog := &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  1,
			MagicCookieKey:   sc.pluginType,
			MagicCookieValue: sc.pluginType,
		},
		Plugins:          plugin.PluginSet{sc.pluginType: spirePlugin{offered: s.HostServices, h: h}},
		Cmd:              exec.Command(s.Plugin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         false,
		SyncStdout:       io.Discard,
		SyncStderr:       io.Discard,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "spirehost", Output: hostLog, JSONFormat: true, Level: hclog.Trace}),
	})
	defer client.Kill()

	r := &report{}
	finish := func() {
		r.HostCalls = h.recorded()
		_ = json.NewEncoder(os.Stdout).Encode(r)
		for _, c := range r.Checks {
			if !c.OK {
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	shutdown := func() {
		reattach := client.ReattachConfig()
		client.Kill()
		var err error
		if !client.Exited() {
			err = errors.New("plugin process still running after Kill")
		} else if strings.Contains(hostLog.String(), "plugin failed to exit gracefully") {
			err = errors.New("plugin did not exit within the grace period and was killed")
		} else if reattach != nil && syscall.Kill(reattach.Pid, 0) == nil {
			err = fmt.Errorf("process %d still exists", reattach.Pid)
		}
		r.add("shutdown", err)
		if reattach != nil && reattach.Addr != nil && reattach.Addr.Network() == "unix" {
			if _, statErr := os.Stat(reattach.Addr.String()); statErr == nil {
				r.add("socket_removed", fmt.Errorf("socket %s left behind", reattach.Addr.String()))
			} else {
				r.add("socket_removed", nil)
			}
		}
	}

	rpc, err := client.Client()
	if !r.add("handshake", err) {
		finish()
	}
	rawDispensed, err := rpc.Dispense(sc.pluginType)
	if !r.add("dispense", err) {
		shutdown()
		finish()
	}
	d := rawDispensed.(dispensed)
	defer d.hostServer.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	names, err := private.Init(ctx, d.conn, offered)
	r.PluginServiceNames = names
	if s.ExpectInitError != "" {
		r.add("init_refused", expectCode(err, codes.FailedPrecondition, s.ExpectInitError))
		shutdown()
		finish()
	}
	if err == nil {
		err = expectEqual("plugin service names", names, []string{sc.serviceName, configName})
	}
	if !r.add("init", err) {
		shutdown()
		finish()
	}

	cfg := configv1.NewConfigClient(d.conn)
	_, err = cfg.Configure(ctx, &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: s.TrustDomain},
		HclConfiguration:  sc.config,
	})
	if r.add("configure", err) {
		r.add("configure_logged", waitForLog(hostLog, "configured", "info"))
	}
	for i, bad := range s.BadConfigs {
		_, err := cfg.Configure(ctx, &configv1.ConfigureRequest{
			CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: s.TrustDomain},
			HclConfiguration:  bad.HCL,
		})
		err = expectCode(err, codes.InvalidArgument, bad.Key)
		if err == nil && bad.Line > 0 {
			err = expectCode(errOf(cfg.Configure(ctx, &configv1.ConfigureRequest{
				CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: s.TrustDomain},
				HclConfiguration:  bad.HCL,
			})), codes.InvalidArgument, fmt.Sprintf("line %d", bad.Line))
		}
		r.add(fmt.Sprintf("bad_config_%d", i), err)
	}
	// A refused configuration leaves the previous one in place: configure again to be sure.
	_, err = cfg.Configure(ctx, &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: s.TrustDomain},
		HclConfiguration:  sc.config,
	})
	r.add("reconfigure", err)
	resp, err := cfg.Validate(ctx, &configv1.ValidateRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: s.TrustDomain},
		HclConfiguration:  sc.config,
	})
	if err == nil && !resp.Valid {
		err = fmt.Errorf("Validate said invalid: %v", resp.Notes)
	}
	r.add("validate", err)

	sc.run(ctx, d.conn, h, r)

	r.add("deinit", private.Deinit(ctx, d.conn))
	r.add("deinit_ran_close_hook", waitForLog(hostLog, "plugin closed", "info"))
	shutdown()
	finish()
}

func errOf[T any](_ T, err error) error { return err }

func runNodeAttestor(ctx context.Context, conn *grpc.ClientConn, h *hostServices, r *report) {
	client := nodeattestorv1.NewNodeAttestorClient(conn)
	attest := func(answer string) (*nodeattestorv1.AgentAttributes, error) {
		stream, err := client.Attest(ctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_Payload{Payload: []byte("agent:node-1")}}); err != nil {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if got := string(resp.GetChallenge()); got != "nonce-123" {
			return nil, fmt.Errorf("challenge %q, want nonce-123", got)
		}
		if err := stream.Send(&nodeattestorv1.AttestRequest{Request: &nodeattestorv1.AttestRequest_ChallengeResponse{ChallengeResponse: []byte(answer)}}); err != nil {
			return nil, err
		}
		resp, err = stream.Recv()
		if err != nil {
			return nil, err
		}
		if _, err := stream.Recv(); err != io.EOF {
			return nil, fmt.Errorf("stream not closed after the attributes: %v", err)
		}
		return resp.GetAgentAttributes(), nil
	}
	attrs, err := attest("nonce-123:s3cret")
	if err == nil {
		err = expectEqual("spiffe id", attrs.GetSpiffeId(), "spiffe://example.org/spire/agent/rust/node-1")
	}
	if err == nil {
		want := []string{"a:b", "c:d"}
		if slices.Contains(h.offered, "agentstore") {
			want = append(want, "agentstore:known")
		}
		err = expectEqual("selectors", attrs.GetSelectorValues(), want)
	}
	if err == nil && !attrs.GetCanReattest() {
		err = errors.New("can_reattest is false")
	}
	r.add("rpc_attest", err)
	var wantCalls []string
	if slices.Contains(h.offered, "agentstore") {
		wantCalls = []string{"AgentStore.GetAgentInfo spiffe://example.org/spire/agent/rust/node-1"}
	}
	r.add("host_service_calls", expectEqual("host calls", h.recorded(), wantCalls))
	_, err = attest("nonce-123:wrong")
	r.add("rpc_attest_wrong_answer", expectCode(err, codes.PermissionDenied, "challenge response mismatch"))
}

// stillOpen checks that recv neither ends nor fails within 300 ms, then cancels the stream and
// expects Canceled: the plugin kept the subscription open.
func stillOpen(cancel context.CancelFunc, recv func() error) error {
	done := make(chan error, 1)
	go func() { done <- recv() }()
	select {
	case err := <-done:
		return fmt.Errorf("the stream ended after the first answer: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	return expectCode(<-done, codes.Canceled, "")
}

func runUpstreamAuthority(ctx context.Context, conn *grpc.ClientConn, _ *hostServices, r *report) {
	client := upstreamauthorityv1.NewUpstreamAuthorityClient(conn)

	mintCtx, mintCancel := context.WithCancel(ctx)
	defer mintCancel()
	mint, err := client.MintX509CAAndSubscribe(mintCtx, &upstreamauthorityv1.MintX509CARequest{Csr: []byte("csr-bytes"), PreferredTtl: 3600})
	var first *upstreamauthorityv1.MintX509CAResponse
	if err == nil {
		first, err = mint.Recv()
	}
	if err == nil {
		var chain, roots []string
		for _, c := range first.X509CaChain {
			chain = append(chain, string(c.Asn1))
		}
		for _, c := range first.UpstreamX509Roots {
			roots = append(roots, string(c.Asn1))
		}
		err = expectEqual("chain", chain, []string{"signed:csr-bytes"})
		if err == nil {
			err = expectEqual("roots", roots, []string{"root-1", "root-2"})
		}
	}
	r.add("rpc_mint_x509ca", err)
	if err == nil {
		r.add("rpc_mint_x509ca_stays_open", stillOpen(mintCancel, func() error { _, err := mint.Recv(); return err }))
	}

	jwtCtx, jwtCancel := context.WithCancel(ctx)
	defer jwtCancel()
	publish, err := client.PublishJWTKeyAndSubscribe(jwtCtx, &upstreamauthorityv1.PublishJWTKeyRequest{JwtKey: &typesv1.JWTKey{KeyId: "local-kid", PublicKey: []byte("local-key")}})
	var keys *upstreamauthorityv1.PublishJWTKeyResponse
	if err == nil {
		keys, err = publish.Recv()
	}
	if err == nil {
		var ids []string
		for _, k := range keys.UpstreamJwtKeys {
			ids = append(ids, k.KeyId+"="+string(k.PublicKey))
		}
		err = expectEqual("jwt keys", ids, []string{"local-kid=local-key", "upstream-kid=upstream-key"})
	}
	r.add("rpc_publish_jwt_key", err)
	if err == nil {
		r.add("rpc_publish_jwt_key_stays_open", stillOpen(jwtCancel, func() error { _, err := publish.Recv(); return err }))
	}

	bundle, err := client.SubscribeToLocalBundle(ctx, &upstreamauthorityv1.SubscribeToLocalBundleRequest{})
	if err == nil {
		_, err = bundle.Recv()
	}
	r.add("rpc_subscribe_local_bundle_unimplemented", expectCode(err, codes.Unimplemented, "not supported"))
}

func runKeyManager(ctx context.Context, conn *grpc.ClientConn, h *hostServices, r *report) {
	client := keymanagerv1.NewKeyManagerClient(conn)
	gen, err := client.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "k1", KeyType: keymanagerv1.KeyType_EC_P256})
	if err == nil {
		err = expectEqual("public key", []any{gen.PublicKey.Id, gen.PublicKey.Type, string(gen.PublicKey.PkixData), gen.PublicKey.Fingerprint},
			[]any{"k1", keymanagerv1.KeyType_EC_P256, "km:k1", "fp:k1"})
	}
	r.add("rpc_generate_key", err)
	r.add("host_service_calls", expectEqual("host calls", h.recorded(), []string{"Metrics.IncrCounter rust_keymanager.generate_key 1 {key_id=k1}"}))

	keys, err := client.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	if err == nil {
		err = expectEqual("key count", len(keys.PublicKeys), 1)
	}
	r.add("rpc_get_public_keys", err)
	sig, err := client.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: "k1", Data: []byte("data")})
	if err == nil {
		err = expectEqual("signature", []string{string(sig.Signature), sig.KeyFingerprint}, []string{"sig(k1):data", "fp:k1"})
	}
	r.add("rpc_sign_data", err)
	_, err = client.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "nope"})
	r.add("rpc_get_public_key_not_found", expectCode(err, codes.NotFound, "nope"))
	_, err = client.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyType: keymanagerv1.KeyType_EC_P256})
	r.add("rpc_generate_key_invalid", expectCode(err, codes.InvalidArgument, "key id is required"))
}

func runWorkloadAttestor(ctx context.Context, conn *grpc.ClientConn, _ *hostServices, r *report) {
	client := workloadattestorv1.NewWorkloadAttestorClient(conn)
	resp, err := client.Attest(ctx, &workloadattestorv1.AttestRequest{Pid: 42})
	if err == nil {
		err = expectEqual("selectors for 42", resp.SelectorValues, []string{"team:blue", "env:test", "special:yes", "pid:42"})
	}
	r.add("rpc_attest_pid_42", err)
	resp, err = client.Attest(ctx, &workloadattestorv1.AttestRequest{Pid: 7})
	if err == nil {
		err = expectEqual("selectors for 7", resp.SelectorValues, []string{"team:blue", "env:test", "pid:7"})
	}
	r.add("rpc_attest_pid_7", err)
}

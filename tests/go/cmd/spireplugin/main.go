// Command spireplugin is a SPIRE plugin built with the real spire-plugin-sdk (pluginmain.Serve)
// for the Rust catalog tests. One binary serves several plugin types, chosen with -type, and
// misbehaves on request (no Config service, failing or hanging Configure, failing Init).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	metricsv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	upstreamauthorityv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/upstreamauthority/v1"
	"github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/types"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	pluginType    = flag.String("type", "agent-keymanager", "agent-keymanager | agent-keymanager-unwritten | agent-workloadattestor | server-credentialcomposer | server-nodeattestor | server-upstreamauthority")
	noConfig      = flag.Bool("no-config", false, "do not serve the Config service")
	configureFail = flag.Bool("configure-fail", false, "Configure returns an error")
	configureHang = flag.Bool("configure-hang", false, "Configure blocks until its call is cancelled")
	initFail      = flag.Bool("init-fail", false, "BrokerHostServices fails, so Init fails")
	useMetrics    = flag.Bool("metrics", false, "need the Metrics host service; Attest calls IncrCounter")
	_             = flag.String("tag", "", "ignored; lets tests find this process")
	closeMarker   = flag.String("close-marker", "", "file written when the SDK calls Close (after Deinit)")
)

// config is what the last Configure call carried.
type config struct {
	configv1.UnimplementedConfigServer
	mu          sync.Mutex
	trustDomain string
	raw         string
	values      map[string]string
	configured  int
	metrics     metricsv1.MetricsServiceClient
}

// parse reads `key = value` lines ("key" and "value" may be quoted); enough for flat HCL.
func parse(text string) (map[string]string, error) {
	values := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "{" || line == "}" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("unparseable configuration line %q", line)
		}
		values[strings.Trim(strings.TrimSpace(key), `"`)] = strings.Trim(strings.TrimSpace(value), `"`)
	}
	return values, nil
}

func (c *config) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	if *configureHang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if *configureFail {
		return nil, errors.New("refusing configuration on purpose")
	}
	values, err := parse(req.HclConfiguration)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trustDomain = req.CoreConfiguration.GetTrustDomain()
	c.raw = req.HclConfiguration
	c.values = values
	c.configured++
	return &configv1.ConfigureResponse{}, nil
}

func (c *config) Validate(ctx context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	_, err := parse(req.HclConfiguration)
	if err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true}, nil
}

func (c *config) get(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[key]
}

func (c *config) BrokerHostServices(broker pluginsdk.ServiceBroker) error {
	if *initFail {
		return errors.New("host services rejected on purpose")
	}
	if *useMetrics && !broker.BrokerClient(&c.metrics) {
		return errors.New("the Metrics host service is not offered")
	}
	return nil
}

func (c *config) Close() error {
	if *closeMarker != "" {
		return os.WriteFile(*closeMarker, []byte("closed"), 0o600)
	}
	return nil
}

// credentialComposer adds the configured "policy" OID to the server CA's attributes and
// leaves the other credentials to SPIRE's defaults (UNIMPLEMENTED).
type credentialComposer struct {
	credentialcomposerv1.UnimplementedCredentialComposerServer
	*config
}

func (c *credentialComposer) ComposeServerX509CA(ctx context.Context, req *credentialcomposerv1.ComposeServerX509CARequest) (*credentialcomposerv1.ComposeServerX509CAResponse, error) {
	attributes := req.GetAttributes()
	if attributes == nil {
		return nil, status.Error(codes.InvalidArgument, "attributes are required")
	}
	if policy := c.get("policy"); policy != "" {
		attributes.PolicyIdentifiers = append(attributes.PolicyIdentifiers, policy)
	}
	return &credentialcomposerv1.ComposeServerX509CAResponse{Attributes: attributes}, nil
}

type unwrittenKeyManager struct {
	keymanagerv1.UnimplementedKeyManagerServer
}

type keyManager struct {
	keymanagerv1.UnimplementedKeyManagerServer
	*config
	mu   sync.Mutex
	keys map[string]*keymanagerv1.PublicKey
}

func (k *keyManager) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	key := &keymanagerv1.PublicKey{
		Id:          req.KeyId,
		Type:        req.KeyType,
		PkixData:    []byte("pkix:" + req.KeyId),
		Fingerprint: k.get("fingerprint_prefix") + req.KeyId,
	}
	k.mu.Lock()
	k.keys[req.KeyId] = key
	k.mu.Unlock()
	return &keymanagerv1.GenerateKeyResponse{PublicKey: key}, nil
}

func (k *keyManager) GetPublicKeys(ctx context.Context, req *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var ids []string
	for id := range k.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	resp := &keymanagerv1.GetPublicKeysResponse{}
	for _, id := range ids {
		resp.PublicKeys = append(resp.PublicKeys, k.keys[id])
	}
	return resp, nil
}

type workloadAttestor struct {
	workloadattestorv1.UnimplementedWorkloadAttestorServer
	*config
}

// Attest reports what the plugin was configured with, so the host can check what arrived.
func (w *workloadAttestor) Attest(ctx context.Context, req *workloadattestorv1.AttestRequest) (*workloadattestorv1.AttestResponse, error) {
	if *useMetrics {
		_, err := w.metrics.IncrCounter(ctx, &metricsv1.IncrCounterRequest{
			Key:    []string{"workload", "attest"},
			Val:    1,
			Labels: []*metricsv1.Label{{Name: "pid", Value: fmt.Sprint(req.Pid)}},
		})
		if err != nil {
			return nil, fmt.Errorf("metrics host service: %w", err)
		}
	}
	w.config.mu.Lock()
	defer w.config.mu.Unlock()
	return &workloadattestorv1.AttestResponse{SelectorValues: []string{
		fmt.Sprintf("pid:%d", req.Pid),
		"trust_domain:" + w.trustDomain,
		fmt.Sprintf("configured:%d", w.configured),
		"hcl:" + w.raw,
	}}, nil
}

type nodeAttestor struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	*config
}

// Attest challenges once ("challenge:<payload>"), expects "response:<payload>" back, then
// returns the agent's attributes.
func (n *nodeAttestor) Attest(stream nodeattestorv1.NodeAttestor_AttestServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	payload := string(req.GetPayload())
	if err := stream.Send(&nodeattestorv1.AttestResponse{Response: &nodeattestorv1.AttestResponse_Challenge{Challenge: []byte("challenge:" + payload)}}); err != nil {
		return err
	}
	req, err = stream.Recv()
	if err != nil {
		return err
	}
	if got := string(req.GetChallengeResponse()); got != "response:"+payload {
		return fmt.Errorf("wrong challenge response %q", got)
	}
	n.config.mu.Lock()
	td := n.trustDomain
	n.config.mu.Unlock()
	return stream.Send(&nodeattestorv1.AttestResponse{Response: &nodeattestorv1.AttestResponse_AgentAttributes{AgentAttributes: &nodeattestorv1.AgentAttributes{
		SpiffeId:       "spiffe://" + td + "/spire/agent/test/" + payload,
		SelectorValues: []string{"selector:" + n.get("selector")},
	}}})
}

type upstreamAuthority struct {
	upstreamauthorityv1.UnimplementedUpstreamAuthorityServer
	*config
}

// MintX509CAAndSubscribe sends `updates` responses (default 3), each echoing the CSR, then ends.
func (u *upstreamAuthority) MintX509CAAndSubscribe(req *upstreamauthorityv1.MintX509CARequest, stream upstreamauthorityv1.UpstreamAuthority_MintX509CAAndSubscribeServer) error {
	updates := 3
	if v := u.get("updates"); v != "" {
		if _, err := fmt.Sscan(v, &updates); err != nil {
			return err
		}
	}
	for i := 0; i < updates; i++ {
		err := stream.Send(&upstreamauthorityv1.MintX509CAResponse{
			X509CaChain:       []*types.X509Certificate{{Asn1: req.Csr}},
			UpstreamX509Roots: []*types.X509Certificate{{Asn1: []byte(fmt.Sprintf("root-%d", i))}},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func main() {
	flag.Parse()
	cfg := &config{values: map[string]string{}}
	var plugin pluginsdk.PluginServer
	switch *pluginType {
	case "agent-keymanager":
		plugin = keymanagerv1.KeyManagerPluginServer(&keyManager{config: cfg, keys: map[string]*keymanagerv1.PublicKey{}})
	case "agent-keymanager-unwritten":
		// Every RPC answers the Go SDK's UNIMPLEMENTED, as a plugin whose author has not
		// written them yet.
		plugin = keymanagerv1.KeyManagerPluginServer(&unwrittenKeyManager{})
	case "agent-workloadattestor":
		plugin = workloadattestorv1.WorkloadAttestorPluginServer(&workloadAttestor{config: cfg})
	case "server-credentialcomposer":
		plugin = credentialcomposerv1.CredentialComposerPluginServer(&credentialComposer{config: cfg})
	case "server-nodeattestor":
		plugin = nodeattestorv1.NodeAttestorPluginServer(&nodeAttestor{config: cfg})
	case "server-upstreamauthority":
		plugin = upstreamauthorityv1.UpstreamAuthorityPluginServer(&upstreamAuthority{config: cfg})
	default:
		fmt.Fprintf(os.Stderr, "unknown -type %q\n", *pluginType)
		os.Exit(2)
	}
	var services []pluginsdk.ServiceServer
	if !*noConfig {
		services = append(services, configv1.ConfigServiceServer(cfg))
	}
	var _ io.Closer = cfg // the SDK calls Close after Deinit
	pluginmain.Serve(plugin, services...)
}

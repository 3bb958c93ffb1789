// Package satlab is the Go client of satlab.v1.TrainingService: one method
// per RPC over the generated stubs in satlab/satlabv1, with context
// deadlines, typed errors (see Error) and a resumable Train helper.
//
//	c, err := satlab.Dial("127.0.0.1:50051")
//	if err != nil { ... }
//	defer c.Close()
//	net, err := c.CreateNetwork(ctx, &pb.NetworkSpec{...}, "neuron")
//	res, err := c.ComputeGradients(ctx, net.Name, batch, pb.Loss_LOSS_BCE)
//
// Unary calls get the client's default timeout (30 s) unless ctx already
// carries a deadline; streams run until ctx ends.
package satlab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "satlab/satlabv1"
)

// ServiceName is the gRPC service name, also the health-check service.
const ServiceName = "satlab.v1.TrainingService"

// MaxMessageBytes is the server's default message limit (64 MiB); the
// client sends and receives up to it.
const MaxMessageBytes = 64 << 20

// Options configure a Client.
type Options struct {
	// Timeout of unary calls whose context has no deadline; 0 means 30 s.
	Timeout time.Duration
	// DialOptions replace the default insecure transport credentials and
	// message limits when non-empty (the TLS fields are then ignored).
	DialOptions []grpc.DialOption
	// TLS (implied by any TLS*File) connects with TLS and verifies the
	// server's certificate against TLSCAFile (PEM; empty: the system roots).
	// TLSCertFile + TLSKeyFile present a client certificate (mutual TLS).
	// TLSServerName is the name the server's certificate must carry when it
	// is not the target's host.
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string
	// APIKey is sent as "authorization: Bearer <APIKey>" on every call and
	// stream; empty sends none. (Dial does not read $SATLAB_API_KEY: pass
	// os.Getenv("SATLAB_API_KEY") to use it.)
	APIKey string
}

// TLSCredentials builds gRPC transport credentials from PEM files: the CA
// the server's certificate must chain to (empty: the system roots), a
// client certificate and key for mutual TLS (both or neither), and the
// server name to verify (empty: the target's host).
func TLSCredentials(caFile, certFile, keyFile, serverName string) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLSCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLSCAFile: expected PEM certificates in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("TLSCertFile and TLSKeyFile: expected both (mutual TLS) or neither")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLSCertFile/TLSKeyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

// bearer sends an API key as call metadata. It does not require transport
// security, so that a loopback plaintext server gets the key too.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }

// Client is a connection to one satlab server. Safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	rpc     pb.TrainingServiceClient
	health  healthpb.HealthClient
	timeout time.Duration
}

// Dial connects (lazily, as grpc.Dial does) to target, e.g. "127.0.0.1:50051".
func Dial(target string, opts ...Options) (*Client, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	dial := o.DialOptions
	if len(dial) == 0 {
		// grpc 1.33 (Debian 12) predates credentials/insecure.
		transport := grpc.WithInsecure()
		if o.TLS || o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSKeyFile != "" {
			creds, err := TLSCredentials(o.TLSCAFile, o.TLSCertFile, o.TLSKeyFile, o.TLSServerName)
			if err != nil {
				return nil, wrap("Dial", err)
			}
			transport = grpc.WithTransportCredentials(creds)
		}
		dial = []grpc.DialOption{
			transport,
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes),
				grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		}
	}
	if o.APIKey != "" {
		dial = append(dial[:len(dial):len(dial)], grpc.WithPerRPCCredentials(bearer(o.APIKey)))
	}
	conn, err := grpc.Dial(target, dial...)
	if err != nil {
		return nil, wrap("Dial", err)
	}
	c := NewClient(conn, o)
	return c, nil
}

// NewClient wraps an existing connection (custom credentials, tests). Close
// closes conn.
func NewClient(conn *grpc.ClientConn, o Options) *Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Client{conn: conn, rpc: pb.NewTrainingServiceClient(conn),
		health: healthpb.NewHealthClient(conn), timeout: timeout}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Raw returns the generated stub, for calls the wrapper does not cover.
func (c *Client) Raw() pb.TrainingServiceClient { return c.rpc }

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// NetworkName returns "networks/{id}" for an id; a full name is returned as is.
func NetworkName(idOrName string) string {
	if strings.HasPrefix(idOrName, "networks/") {
		return idOrName
	}
	return "networks/" + idOrName
}

// unaryCtx applies the default timeout when ctx has no deadline.
func (c *Client) unaryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// CreateNetwork creates a network from spec; networkID may be empty (the
// server picks one).
func (c *Client) CreateNetwork(ctx context.Context, spec *pb.NetworkSpec, networkID string) (*pb.Network, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: &pb.Network{Spec: spec}, NetworkId: networkID})
	if err != nil {
		return nil, wrap("CreateNetwork", err)
	}
	return r.Network, nil
}

// GetNetwork returns a network's metadata (name or id).
func (c *Client) GetNetwork(ctx context.Context, name string) (*pb.Network, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.GetNetwork(ctx, &pb.GetNetworkRequest{Name: NetworkName(name)})
	if err != nil {
		return nil, wrap("GetNetwork", err)
	}
	return r.Network, nil
}

// ListNetworks returns one page (pageSize 0 means the server's 50).
func (c *Client) ListNetworks(ctx context.Context, pageSize int32, pageToken string) (*pb.ListNetworksResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.ListNetworks(ctx, &pb.ListNetworksRequest{PageSize: pageSize, PageToken: pageToken})
	return r, wrap("ListNetworks", err)
}

// ListAllNetworks follows next_page_token to the last page.
func (c *Client) ListAllNetworks(ctx context.Context) ([]*pb.Network, error) {
	var all []*pb.Network
	token := ""
	for {
		page, err := c.ListNetworks(ctx, 0, token)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Networks...)
		if page.NextPageToken == "" {
			return all, nil
		}
		token = page.NextPageToken
	}
}

// DeleteNetwork deletes a network; an open Train stream on it ends ABORTED.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	_, err := c.rpc.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Name: NetworkName(name)})
	return wrap("DeleteNetwork", err)
}

// GetParameters returns every layer's weights and biases and the step.
func (c *Client) GetParameters(ctx context.Context, name string) (*pb.GetParametersResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.GetParameters(ctx, &pb.GetParametersRequest{Name: NetworkName(name)})
	return r, wrap("GetParameters", err)
}

// SetParameters replaces every layer's parameters (all or nothing).
func (c *Client) SetParameters(ctx context.Context, name string, layers []*pb.LayerParameters, resetOptimizerState bool) (*pb.Network, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.SetParameters(ctx, &pb.SetParametersRequest{Name: NetworkName(name), Layers: layers,
		ResetOptimizerState: resetOptimizerState})
	if err != nil {
		return nil, wrap("SetParameters", err)
	}
	return r.Network, nil
}

// Forward runs inputs [batch, input_size] through the network.
func (c *Client) Forward(ctx context.Context, name string, inputs *pb.Tensor, includeLayers bool) (*pb.ForwardResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.Forward(ctx, &pb.ForwardRequest{Name: NetworkName(name), Inputs: inputs, IncludeLayers: includeLayers})
	return r, wrap("Forward", err)
}

// ComputeGradients returns loss, gradients and saturation of one minibatch
// without a step; counterfactuals adds the same under other losses.
func (c *Client) ComputeGradients(ctx context.Context, name string, batch *pb.Minibatch, counterfactuals ...pb.Loss) (*pb.ComputeGradientsResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.ComputeGradients(ctx, &pb.ComputeGradientsRequest{Name: NetworkName(name), Batch: batch,
		CounterfactualLosses: counterfactuals})
	return r, wrap("ComputeGradients", err)
}

// TrainStep applies one optimizer step on one minibatch.
func (c *Client) TrainStep(ctx context.Context, name string, batch *pb.Minibatch) (*pb.StepResult, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.TrainStep(ctx, &pb.TrainStepRequest{Name: NetworkName(name), Batch: batch})
	if err != nil {
		return nil, wrap("TrainStep", err)
	}
	return r.Result, nil
}

// Evaluate returns loss, accuracy and saturation over data without a step.
func (c *Client) Evaluate(ctx context.Context, name string, data *pb.Minibatch) (*pb.EvaluateResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.Evaluate(ctx, &pb.EvaluateRequest{Name: NetworkName(name), Data: data})
	return r, wrap("Evaluate", err)
}

// WatchMetrics streams metric events of one network (name) or of all (""),
// replaying retained events with step >= startStep first (-1: live only).
// onEvent returning false ends the watch with nil. The call returns when
// ctx ends (its error), the network is deleted (nil), or the server ends
// the stream (UNAVAILABLE on shutdown).
func (c *Client) WatchMetrics(ctx context.Context, name string, startStep int64, onEvent func(*pb.WatchMetricsResponse) bool) error {
	if name != "" {
		name = NetworkName(name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.WatchMetrics(ctx, &pb.WatchMetricsRequest{Name: name, StartStep: startStep})
	if err != nil {
		return wrap("WatchMetrics", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return endOfStream("WatchMetrics", err)
		}
		if !onEvent(ev) {
			return nil
		}
	}
}

// RunExperiment runs an experiment, calling onMessage (may be nil) for each
// epoch message, and returns the summary. onMessage returning false cancels
// the experiment and returns ErrCanceled.
func (c *Client) RunExperiment(ctx context.Context, spec *pb.ExperimentSpec, onMessage func(*pb.RunExperimentResponse) bool) (*pb.ExperimentSummary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.RunExperiment(ctx, &pb.RunExperimentRequest{Spec: spec})
	if err != nil {
		return nil, wrap("RunExperiment", err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if err = endOfStream("RunExperiment", err); err == nil {
				err = &Error{RPC: "RunExperiment", Code: codes.Unknown, Message: "stream ended without a summary"}
			}
			return nil, err
		}
		if onMessage != nil && !onMessage(m) {
			cancel()
			return nil, &Error{RPC: "RunExperiment", Code: codes.Canceled, Message: "canceled by onMessage"}
		}
		if s := m.GetSummary(); s != nil {
			return s, nil
		}
	}
}

// CheckHealth asks grpc.health.v1 about service ("" = the whole server);
// true when SERVING.
func (c *Client) CheckHealth(ctx context.Context, service string) (bool, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return false, wrap("Health.Check", err)
	}
	return r.Status == healthpb.HealthCheckResponse_SERVING, nil
}

// WaitReady blocks until the server answers SERVING for ServiceName or ctx
// ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		ok, err := c.CheckHealth(attempt, ServiceName)
		cancel()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("satlab: server not ready: %w (last: %v)", wrap("WaitReady", ctx.Err()), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// --- Experiments as resources (`experiments/{id}`) ---

// ExperimentName returns "experiments/{id}" for an id, or name unchanged.
func ExperimentName(name string) string {
	if strings.HasPrefix(name, "experiments/") {
		return name
	}
	return "experiments/" + name
}

// GetExperiment returns a kept experiment: spec, state, curves and summary.
func (c *Client) GetExperiment(ctx context.Context, name string) (*pb.Experiment, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.GetExperiment(ctx, &pb.GetExperimentRequest{Name: ExperimentName(name)})
	if err != nil {
		return nil, wrap("GetExperiment", err)
	}
	return r.Experiment, nil
}

// ListExperiments returns one page of experiments, without curves
// (pageSize 0 means the server's 50).
func (c *Client) ListExperiments(ctx context.Context, pageSize int32, pageToken string) (*pb.ListExperimentsResponse, error) {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	r, err := c.rpc.ListExperiments(ctx, &pb.ListExperimentsRequest{PageSize: pageSize, PageToken: pageToken})
	return r, wrap("ListExperiments", err)
}

// DeleteExperiment deletes a finished experiment.
func (c *Client) DeleteExperiment(ctx context.Context, name string) error {
	ctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	_, err := c.rpc.DeleteExperiment(ctx, &pb.DeleteExperimentRequest{Name: ExperimentName(name)})
	return wrap("DeleteExperiment", err)
}

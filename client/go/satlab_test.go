package satlab_test

// Tests of the Go client against a real satlab-server ($SATLAB_SERVER_BIN,
// started on 127.0.0.1 with ports chosen at run time): every RPC, the error
// codes a client can meet, a Train stream and WatchMetrics.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"satlab"
	"satlab/internal/livetest"
	pb "satlab/satlabv1"
)

var server *livetest.Server

func TestMain(m *testing.M) {
	s, err := livetest.StartE()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	if err := s.Stop(15 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "satlab-server exited with %v after SIGTERM: %s\n", err, s.Log())
		code = 1
	}
	os.Exit(code)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func unique(prefix string) string { return fmt.Sprintf("%s-%08x", prefix, rand.Uint32()) }

// neuronSpec: one sigmoid unit, w = b = 2, SGD eta 0.15, float64.
func neuronSpec(loss pb.Loss) *pb.NetworkSpec {
	return &pb.NetworkSpec{
		InputSize: 1,
		Layers:    []*pb.LayerSpec{satlab.Layer(1, pb.Activation_ACTIVATION_SIGMOID)},
		Loss:      loss,
		Dtype:     pb.DType_DTYPE_FLOAT64,
		Optimizer: satlab.Sgd(0.15, 0),
		Init: &pb.Initialization{Scheme: pb.InitScheme_INIT_SCHEME_EXPLICIT,
			Parameters: []*pb.LayerParameters{{Weights: satlab.Matrix(1, 1, []float64{2}), Biases: satlab.Vector(2)}}},
	}
}

func create(t *testing.T, c *satlab.Client, spec *pb.NetworkSpec) *pb.Network {
	t.Helper()
	net, err := c.CreateNetwork(ctxT(t), spec, unique("go"))
	if err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	t.Cleanup(func() { _ = c.DeleteNetwork(context.Background(), net.Name) })
	return net
}

func neuronBatch() *pb.Minibatch {
	return satlab.Batch(satlab.Matrix(1, 1, []float64{1}), satlab.Matrix(1, 1, []float64{0}))
}

func near(t *testing.T, what string, got, want, rel float64) {
	t.Helper()
	if math.Abs(got-want) > rel*math.Abs(want) {
		t.Errorf("%s = %.9g, want %.9g (rel %g)", what, got, want, rel)
	}
}

func wantCode(t *testing.T, what string, err error, sentinel *satlab.Error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %s", what, err, sentinel.Code)
	}
	var e *satlab.Error
	if !errors.As(err, &e) || e.RPC == "" {
		t.Fatalf("%s: %v is not a *satlab.Error naming its RPC", what, err)
	}
	if status.Code(err) != sentinel.Code {
		t.Fatalf("%s: status.Code = %s, want %s", what, status.Code(err), sentinel.Code)
	}
}

func TestHealth(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	for _, svc := range []string{"", satlab.ServiceName} {
		ok, err := c.CheckHealth(ctxT(t), svc)
		if err != nil || !ok {
			t.Errorf("CheckHealth(%q) = %v, %v; want true", svc, ok, err)
		}
	}
}

func TestNetworkLifecycle(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	id := unique("go-life")
	net, err := c.CreateNetwork(ctx, neuronSpec(pb.Loss_LOSS_MSE), id)
	if err != nil {
		t.Fatal(err)
	}
	if net.Name != "networks/"+id || net.ParameterCount != 2 || net.Step != 0 {
		t.Fatalf("CreateNetwork returned %v", net)
	}
	got, err := c.GetNetwork(ctx, id) // an id works as well as a name
	if err != nil || got.Name != net.Name || got.Spec.Loss != pb.Loss_LOSS_MSE {
		t.Fatalf("GetNetwork = %v, %v", got, err)
	}
	other := create(t, c, neuronSpec(pb.Loss_LOSS_BCE))

	// Paging: one network per page must still reach both.
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("ListNetworks: no last page")
		}
		page, err := c.ListNetworks(ctx, 1, token)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Networks) > 1 {
			t.Fatalf("page_size 1 returned %d networks", len(page.Networks))
		}
		for _, n := range page.Networks {
			seen[n.Name] = true
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	all, err := c.ListAllNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inAll := map[string]bool{}
	for _, n := range all {
		inAll[n.Name] = true
	}
	for _, name := range []string{net.Name, other.Name} {
		if !seen[name] || !inAll[name] {
			t.Errorf("%s missing from ListNetworks (paged %v, all %v)", name, seen[name], inAll[name])
		}
	}

	if err := c.DeleteNetwork(ctx, net.Name); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetNetwork(ctx, net.Name)
	wantCode(t, "GetNetwork after delete", err, satlab.ErrNotFound)
}

func TestParametersForwardGradientsStepEvaluate(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	net := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	a0 := 1 / (1 + math.Exp(-4)) // sigmoid(2*1 + 2)

	params, err := c.GetParameters(ctx, net.Name)
	if err != nil {
		t.Fatal(err)
	}
	if w := satlab.Values(params.Layers[0].Weights); len(w) != 1 || w[0] != 2 {
		t.Fatalf("GetParameters weights = %v, want [2]", w)
	}

	fw, err := c.Forward(ctx, net.Name, satlab.Matrix(2, 1, []float64{1, 0}), true)
	if err != nil {
		t.Fatal(err)
	}
	out := satlab.Values(fw.Outputs)
	near(t, "Forward a(x=1)", out[0], a0, 1e-12)
	near(t, "Forward a(x=0)", out[1], 1/(1+math.Exp(-2)), 1e-12)
	if len(fw.Layers) != 1 || satlab.Values(fw.Layers[0].Z)[0] != 4 {
		t.Fatalf("Forward include_layers: %v", fw.Layers)
	}

	// Nielsen's numbers: dC/dw = (a-y) a(1-a) under mse, (a-y) under bce.
	g, err := c.ComputeGradients(ctx, net.Name, neuronBatch(), pb.Loss_LOSS_BCE)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "mse dC/dw", satlab.Values(g.Gradients.Layers[0].Weights)[0], a0*a0*(1-a0), 1e-12)
	near(t, "bce dC/dw", satlab.Values(g.Counterfactuals[0].Layers[0].Weights)[0], a0, 1e-12)
	near(t, "mse dC/dw (docs)", satlab.Values(g.Gradients.Layers[0].Weights)[0], 0.017345, 1e-4)
	near(t, "bce dC/dw (docs)", satlab.Values(g.Counterfactuals[0].Layers[0].Weights)[0], 0.982014, 1e-6)
	near(t, "mse attenuation", g.Gradients.Saturation.OutputAttenuation, a0*(1-a0), 1e-9)
	if g.Counterfactuals[0].Loss != pb.Loss_LOSS_BCE || g.Step != 0 {
		t.Fatalf("counterfactual loss %v, step %d", g.Counterfactuals[0].Loss, g.Step)
	}

	step, err := c.TrainStep(ctx, net.Name, neuronBatch())
	if err != nil {
		t.Fatal(err)
	}
	near(t, "TrainStep loss", step.Loss, 0.5*a0*a0, 1e-12)
	if step.Step != 1 || step.BatchSize != 1 {
		t.Fatalf("TrainStep result %v", step)
	}
	params, err = c.GetParameters(ctx, net.Name)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "w after one step", satlab.Values(params.Layers[0].Weights)[0], 2-0.15*a0*a0*(1-a0), 1e-12)
	if params.Step != 1 {
		t.Fatalf("GetParameters step %d, want 1", params.Step)
	}

	ev, err := c.Evaluate(ctx, net.Name, neuronBatch())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Samples != 1 || ev.Step != 1 || !(ev.Loss < 0.5*a0*a0) {
		t.Fatalf("Evaluate = %v (loss must be below the start's %g)", ev, 0.5*a0*a0)
	}

	// SetParameters back to the start, with the optimizer state reset.
	set, err := c.SetParameters(ctx, net.Name, []*pb.LayerParameters{{Weights: satlab.Matrix(1, 1, []float64{2}),
		Biases: satlab.Vector(2)}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if set.Name != net.Name {
		t.Fatalf("SetParameters returned %v", set)
	}
	fw, err = c.Forward(ctx, net.Name, satlab.Matrix(1, 1, []float64{1}), false)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "a after SetParameters", satlab.Values(fw.Outputs)[0], a0, 1e-12)
}

func TestErrorCodes(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	net := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))

	_, err := c.Forward(ctx, net.Name, satlab.Matrix(1, 2, []float64{1, 2}), false)
	wantCode(t, "Forward with 2 columns", err, satlab.ErrInvalidArgument)
	_, err = c.TrainStep(ctx, net.Name, satlab.Batch(satlab.Matrix(1, 1, []float64{math.NaN()}),
		satlab.Matrix(1, 1, []float64{0})))
	wantCode(t, "TrainStep with NaN", err, satlab.ErrInvalidArgument)
	_, err = c.CreateNetwork(ctx, &pb.NetworkSpec{InputSize: 1}, "")
	wantCode(t, "CreateNetwork without layers", err, satlab.ErrInvalidArgument)
	_, err = c.GetNetwork(ctx, "networks/Not_Valid!")
	wantCode(t, "GetNetwork malformed name", err, satlab.ErrInvalidArgument)
	_, err = c.ListNetworks(ctx, 5000, "")
	wantCode(t, "ListNetworks page_size 5000", err, satlab.ErrInvalidArgument)
	err = c.WatchMetrics(ctx, net.Name, -2, func(*pb.WatchMetricsResponse) bool { return true })
	wantCode(t, "WatchMetrics start_step -2", err, satlab.ErrInvalidArgument)
	_, err = c.RunExperiment(ctx, &pb.ExperimentSpec{}, nil)
	wantCode(t, "RunExperiment empty spec", err, satlab.ErrInvalidArgument)

	missing := "networks/" + unique("missing")
	_, err = c.GetParameters(ctx, missing)
	wantCode(t, "GetParameters unknown", err, satlab.ErrNotFound)
	err = c.DeleteNetwork(ctx, missing)
	wantCode(t, "DeleteNetwork unknown", err, satlab.ErrNotFound)
	_, err = c.Evaluate(ctx, missing, neuronBatch())
	wantCode(t, "Evaluate unknown", err, satlab.ErrNotFound)
	err = c.WatchMetrics(ctx, missing, 0, func(*pb.WatchMetricsResponse) bool { return true })
	wantCode(t, "WatchMetrics unknown", err, satlab.ErrNotFound)
	_, err = c.Train(ctx, missing, []*pb.Minibatch{neuronBatch()}, satlab.TrainOptions{}, nil)
	wantCode(t, "Train unknown", err, satlab.ErrNotFound)

	_, err = c.CreateNetwork(ctx, neuronSpec(pb.Loss_LOSS_MSE), net.Name[len("networks/"):])
	wantCode(t, "CreateNetwork id in use", err, satlab.ErrAlreadyExists)

	// A deadline that has passed: the client's own DEADLINE_EXCEEDED.
	past, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err = c.GetNetwork(past, net.Name)
	wantCode(t, "GetNetwork past deadline", err, satlab.ErrDeadlineExceeded)
	// A live-only watch with no traffic outlives its deadline.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	err = c.WatchMetrics(short, net.Name, -1, func(*pb.WatchMetricsResponse) bool { return true })
	wantCode(t, "WatchMetrics deadline", err, satlab.ErrDeadlineExceeded)
	canceled, cancel3 := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel3)
	err = c.WatchMetrics(canceled, net.Name, -1, func(*pb.WatchMetricsResponse) bool { return true })
	wantCode(t, "WatchMetrics canceled", err, satlab.ErrCanceled)
}

// ABORTED: a Train stream holds the network's writer slot.
func TestAbortedWhileTrainStreamOpen(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	net := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	s, err := c.StartTraining(ctx, net.Name, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(neuronBatch()); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || r.BatchesApplied != 1 {
		t.Fatalf("first result %v, %v", r, err)
	}
	_, err = c.TrainStep(ctx, net.Name, neuronBatch())
	wantCode(t, "TrainStep during Train", err, satlab.ErrAborted)
	_, err = c.SetParameters(ctx, net.Name, []*pb.LayerParameters{{Weights: satlab.Matrix(1, 1, []float64{0}),
		Biases: satlab.Vector(0)}}, false)
	wantCode(t, "SetParameters during Train", err, satlab.ErrAborted)
	// Readers still work and see the stream's step.
	if n, err := c.GetNetwork(ctx, net.Name); err != nil || n.Step != 1 {
		t.Fatalf("GetNetwork during Train = %v, %v", n, err)
	}
	// Deleting the network ends the stream with ABORTED at its next
	// minibatch.
	if err := c.DeleteNetwork(ctx, net.Name); err != nil {
		t.Fatal(err)
	}
	_ = s.Send(neuronBatch()) // may fail if the server already ended the stream
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("Train stream did not end after DeleteNetwork")
		}
		if _, err = s.Recv(); err != nil {
			break
		}
	}
	wantCode(t, "Train after DeleteNetwork", err, satlab.ErrAborted)
}

func TestTrainStream(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	streamed := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	stepped := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	const n = 40
	batches := make([]*pb.Minibatch, n)
	for i := range batches {
		batches[i] = neuronBatch()
	}
	var results []*pb.TrainResponse
	last, err := c.Train(ctx, streamed.Name, batches, satlab.TrainOptions{ReportEvery: 10}, func(r *pb.TrainResponse) {
		results = append(results, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != n/10 {
		t.Fatalf("%d results with report_every 10 over %d batches, want %d", len(results), n, n/10)
	}
	for i, r := range results {
		if want := int64(10 * (i + 1)); r.BatchesApplied != want || r.Result.Step != want {
			t.Errorf("result %d: batches_applied %d step %d, want %d", i, r.BatchesApplied, r.Result.Step, want)
		}
	}
	if last.Step != n {
		t.Fatalf("last step %d, want %d", last.Step, n)
	}
	// The same steps one TrainStep at a time give the same parameters.
	for i := 0; i < n; i++ {
		if _, err := c.TrainStep(ctx, stepped.Name, neuronBatch()); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := c.GetParameters(ctx, streamed.Name)
	b, _ := c.GetParameters(ctx, stepped.Name)
	if wa, wb := satlab.Values(a.Layers[0].Weights)[0], satlab.Values(b.Layers[0].Weights)[0]; wa != wb || wa >= 2 {
		t.Fatalf("w after Train %v, after TrainSteps %v (want equal, below 2)", wa, wb)
	}

	// A stream whose minibatch is malformed ends with INVALID_ARGUMENT.
	bad := []*pb.Minibatch{neuronBatch(), satlab.Batch(satlab.Matrix(1, 3, []float64{1, 2, 3}),
		satlab.Matrix(1, 1, []float64{0}))}
	_, err = c.Train(ctx, streamed.Name, bad, satlab.TrainOptions{}, nil)
	wantCode(t, "Train with a bad minibatch", err, satlab.ErrInvalidArgument)
}

// Several minibatches per message (SendBatches) give the same steps as one
// per message.
func TestTrainSendBatches(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	packed := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	stepped := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	s, err := c.StartTraining(ctx, packed.Name, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for m := 0; m < 3; m++ {
		batches := make([]*pb.Minibatch, 8)
		for i := range batches {
			batches[i] = neuronBatch()
		}
		if err := s.SendBatches(batches); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for {
		r, err := s.Recv()
		if err != nil {
			break
		}
		steps = append(steps, r.Result.Step)
	}
	if len(steps) != 3 || steps[2] != 24 {
		t.Fatalf("results at steps %v, want [8 16 24]", steps)
	}
	for i := 0; i < 24; i++ {
		if _, err := c.TrainStep(ctx, stepped.Name, neuronBatch()); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := c.GetParameters(ctx, packed.Name)
	b, _ := c.GetParameters(ctx, stepped.Name)
	if wa, wb := satlab.Values(a.Layers[0].Weights)[0], satlab.Values(b.Layers[0].Weights)[0]; wa != wb {
		t.Fatalf("w after packed Train %v, after TrainSteps %v", wa, wb)
	}
}

func TestWatchMetrics(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	net := create(t, c, neuronSpec(pb.Loss_LOSS_MSE))
	for i := 0; i < 3; i++ {
		if _, err := c.TrainStep(ctx, net.Name, neuronBatch()); err != nil {
			t.Fatal(err)
		}
	}
	var steps []int64
	deleted := false
	done := make(chan error, 1)
	var mu sync.Mutex
	go func() {
		done <- c.WatchMetrics(ctx, net.Name, 0, func(ev *pb.WatchMetricsResponse) bool {
			mu.Lock()
			defer mu.Unlock()
			if ev.Event.Network != net.Name {
				t.Errorf("event of %q on a watch of %q", ev.Event.Network, net.Name)
			}
			switch k := ev.Event.Kind.(type) {
			case *pb.MetricEvent_Step:
				steps = append(steps, k.Step.Step)
			case *pb.MetricEvent_NetworkDeleted:
				deleted = true
			}
			return true
		})
	}()
	// Three replayed, then one live event.
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(steps) >= 3 })
	if _, err := c.TrainStep(ctx, net.Name, neuronBatch()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(steps) >= 4 })
	// Deleting the network ends the watch with OK (nil).
	if err := c.DeleteNetwork(ctx, net.Name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchMetrics after delete: %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WatchMetrics did not end after DeleteNetwork")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(steps) != "[1 2 3 4]" || !deleted {
		t.Fatalf("steps %v deleted %v, want [1 2 3 4] true", steps, deleted)
	}

	// onEvent returning false stops the watch with nil.
	other := create(t, c, neuronSpec(pb.Loss_LOSS_BCE))
	if _, err := c.TrainStep(ctx, other.Name, neuronBatch()); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := c.WatchMetrics(ctx, "", 0, func(*pb.WatchMetricsResponse) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("WatchMetrics(all) stopped by callback: %v after %d events", err, n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The nielsen preset's w = b = 2 run: the numbers docs/saturation.md gives.
func TestRunExperimentNielsen(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	spec := &pb.ExperimentSpec{
		DisplayName: "go nielsen w=2 b=2",
		Dataset:     &pb.Dataset{Source: &pb.Dataset_Builtin{Builtin: &pb.BuiltinDataset{Kind: pb.DatasetKind_DATASET_KIND_SINGLE_SAMPLE}}},
		Init: &pb.Initialization{Scheme: pb.InitScheme_INIT_SCHEME_EXPLICIT,
			Parameters: []*pb.LayerParameters{{Weights: satlab.Matrix(1, 1, []float64{2}), Biases: satlab.Vector(2)}}},
		Variants: []*pb.ExperimentVariant{
			{Label: "mse", OutputActivation: pb.Activation_ACTIVATION_SIGMOID, Loss: pb.Loss_LOSS_MSE},
			{Label: "bce", OutputActivation: pb.Activation_ACTIVATION_SIGMOID, Loss: pb.Loss_LOSS_BCE},
		},
		Epochs:    300,
		NoShuffle: true,
		Optimizer: satlab.Sgd(0.15, 0),
		Dtype:     pb.DType_DTYPE_FLOAT64,
	}
	epochs := 0
	var lastDone, total int64
	summary, err := c.RunExperiment(ctxT(t), spec, func(m *pb.RunExperimentResponse) bool {
		if m.GetEpoch() != nil {
			epochs++
		}
		lastDone, total = m.EpochsDone, m.EpochsTotal
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if epochs != 2*301 || lastDone != total || total != 2*301 {
		t.Fatalf("%d epoch messages, done %d of %d; want 602", epochs, lastDone, total)
	}
	want := map[string][3]float64{ // initial loss, final loss, epochs to half
		"mse": {0.482176, 0.0205737, 212},
		"bce": {4.01815, 0.0120814, 8},
	}
	for _, v := range summary.Variants {
		w := want[v.Label]
		near(t, v.Label+" initial loss", v.InitialLoss, w[0], 1e-5)
		near(t, v.Label+" final loss", v.FinalLoss, w[1], 1e-5)
		if float64(v.EpochsToHalfLoss) != w[2] {
			t.Errorf("%s epochs to half loss %d, want %v", v.Label, v.EpochsToHalfLoss, w[2])
		}
	}

	// The callback can stop the experiment early.
	_, err = c.RunExperiment(ctxT(t), spec, func(*pb.RunExperimentResponse) bool { return false })
	wantCode(t, "RunExperiment stopped by callback", err, satlab.ErrCanceled)
}

// RESOURCE_EXHAUSTED and UNAVAILABLE need a server of their own: one that
// holds a single network, then stops.
func TestLimitsAndShutdown(t *testing.T) {
	small := livetest.Start(t, "--max_networks=1", "--shutdown_grace_seconds=1")
	defer small.Stop(15 * time.Second)
	c := small.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	if _, err := c.CreateNetwork(ctx, neuronSpec(pb.Loss_LOSS_MSE), "first"); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateNetwork(ctx, neuronSpec(pb.Loss_LOSS_MSE), "second")
	wantCode(t, "CreateNetwork over --max_networks", err, satlab.ErrResourceExhausted)

	// A watch open while the server shuts down ends with UNAVAILABLE. The
	// sleep lets the watch reach the server first; were it late, the call
	// would still fail UNAVAILABLE (connection refused), so the check holds
	// either way.
	done := make(chan error, 1)
	go func() {
		done <- c.WatchMetrics(ctx, "", -1, func(*pb.WatchMetricsResponse) bool { return true })
	}()
	time.Sleep(300 * time.Millisecond)
	if err := small.Stop(15 * time.Second); err != nil {
		t.Fatalf("server exit: %v: %s", err, small.Log())
	}
	select {
	case err := <-done:
		wantCode(t, "WatchMetrics across shutdown", err, satlab.ErrUnavailable)
	case <-time.After(20 * time.Second):
		t.Fatal("WatchMetrics did not end when the server stopped")
	}
	_, err = c.GetNetwork(ctx, "first")
	wantCode(t, "GetNetwork on a stopped server", err, satlab.ErrUnavailable)
}

// The typed error survives wrapping and keeps the gRPC status.
func TestErrorType(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	_, err := c.GetNetwork(ctxT(t), unique("nope"))
	wrapped := fmt.Errorf("loading: %w", err)
	if !errors.Is(wrapped, satlab.ErrNotFound) || errors.Is(wrapped, satlab.ErrAborted) {
		t.Fatalf("errors.Is through wrapping failed: %v", wrapped)
	}
	if satlab.Code(wrapped) != codes.NotFound {
		t.Fatalf("Code = %v", satlab.Code(wrapped))
	}
	var e *satlab.Error
	if !errors.As(wrapped, &e) || e.RPC != "GetNetwork" || e.Message == "" {
		t.Fatalf("errors.As: %+v", e)
	}
	if errors.Is(io.EOF, satlab.ErrNotFound) {
		t.Fatal("io.EOF matched ErrNotFound")
	}
}

func TestExperimentsGetListDelete(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	spec := &pb.ExperimentSpec{
		Dataset:   &pb.Dataset{Source: &pb.Dataset_Builtin{Builtin: &pb.BuiltinDataset{Kind: pb.DatasetKind_DATASET_KIND_SINGLE_SAMPLE}}},
		Variants:  []*pb.ExperimentVariant{{OutputActivation: pb.Activation_ACTIVATION_SIGMOID, Loss: pb.Loss_LOSS_BCE}},
		Epochs:    4,
		NoShuffle: true,
		Optimizer: satlab.Sgd(0.15, 0),
	}
	var name string
	var curves []*pb.EpochMetrics
	summary, err := c.RunExperiment(ctxT(t), spec, func(m *pb.RunExperimentResponse) bool {
		name = m.Experiment
		if e := m.GetEpoch(); e != nil {
			curves = append(curves, e)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetExperiment(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != pb.ExperimentState_EXPERIMENT_STATE_SUCCEEDED || len(got.Curves) != len(curves) ||
		!proto.Equal(got.Summary, summary) {
		t.Fatalf("%s: state %v, %d curves (streamed %d), summary equal %v", name, got.State,
			len(got.Curves), len(curves), proto.Equal(got.Summary, summary))
	}
	for i := range curves {
		if !proto.Equal(got.Curves[i], curves[i]) {
			t.Fatalf("curve %d: kept %v, streamed %v", i, got.Curves[i], curves[i])
		}
	}
	page, err := c.ListExperiments(ctxT(t), 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range page.Experiments {
		found = found || e.Name == name
	}
	if !found {
		t.Fatalf("%s not listed", name)
	}
	if err := c.DeleteExperiment(ctxT(t), name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetExperiment(ctxT(t), name); satlab.Code(err) != codes.NotFound {
		t.Fatalf("GetExperiment after delete: %v, want NotFound", err)
	}
}

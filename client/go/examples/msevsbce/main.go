// Command msevsbce is the single-neuron comparison of Nielsen's chapter 3
// against a live server (docs/saturation.md, `nielsen`).
//
// One sigmoid neuron, input x = 1, target y = 0, starting at w = b = 2
// (z = 4, a = sigmoid(4) = 0.982). Under the quadratic cost (mse) the
// gradient carries the factor sigmoid'(z) = a(1 - a) = 0.0177:
//
//	dC/dw = (a - y) a (1 - a) x = 0.017345   (mse)
//	dC/dw = (a - y) x           = 0.982014   (bce, cross-entropy)
//
// ComputeGradients returns both in one call (bce as a counterfactual loss).
// Then two networks, one per loss, train from the same start with SGD
// (eta 0.15, one step per epoch) and their losses are printed side by side:
// mse crawls off the plateau, bce does not stall. After 300 steps the
// losses are 0.0205737 (mse) and 0.0120814 (bce), as the CLI's
// `satlab experiment nielsen` reports.
//
// Usage: msevsbce [-server HOST:PORT] [-steps N] [-lr ETA]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"

	"satlab"
	pb "satlab/satlabv1"
)

// Result holds the numbers the example prints (checked by its test).
type Result struct {
	// dC/dw under each loss at the start.
	GradW map[pb.Loss]float64
	// Output attenuation at the start.
	Attenuation map[pb.Loss]float64
	// Loss and output a after the last step.
	FinalLoss, FinalA map[pb.Loss]float64
}

func run(ctx context.Context, c *satlab.Client, steps int, lr float64, out io.Writer) (*Result, error) {
	x := satlab.Matrix(1, 1, []float64{1})
	y := satlab.Matrix(1, 1, []float64{0})
	batch := satlab.Batch(x, y)
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	losses := []pb.Loss{pb.Loss_LOSS_MSE, pb.Loss_LOSS_BCE}
	nets := map[pb.Loss]string{}
	defer func() {
		for _, name := range nets {
			_ = c.DeleteNetwork(context.Background(), name)
		}
	}()
	for _, loss := range losses {
		spec := &pb.NetworkSpec{
			InputSize: 1,
			Layers:    []*pb.LayerSpec{satlab.Layer(1, pb.Activation_ACTIVATION_SIGMOID)},
			Loss:      loss,
			Dtype:     pb.DType_DTYPE_FLOAT64,
			Optimizer: satlab.Sgd(lr, 0),
			Init: &pb.Initialization{Scheme: pb.InitScheme_INIT_SCHEME_EXPLICIT,
				Parameters: []*pb.LayerParameters{{Weights: satlab.Matrix(1, 1, []float64{2}), Biases: satlab.Vector(2)}}},
		}
		net, err := c.CreateNetwork(ctx, spec, fmt.Sprintf("neuron-go-%s-%s", shortLoss(loss), suffix))
		if err != nil {
			return nil, err
		}
		nets[loss] = net.Name
	}

	res := &Result{GradW: map[pb.Loss]float64{}, Attenuation: map[pb.Loss]float64{},
		FinalLoss: map[pb.Loss]float64{}, FinalA: map[pb.Loss]float64{}}
	g, err := c.ComputeGradients(ctx, nets[pb.Loss_LOSS_MSE], batch, pb.Loss_LOSS_BCE)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "one neuron, x=1, y=0, w=b=2, a=sigmoid(4)=%.6f\n", 1/(1+math.Exp(-4)))
	fmt.Fprintf(out, "%5s %10s %10s %10s %12s\n", "loss", "C", "dC/dw", "dC/db", "attenuation")
	for _, grad := range []*pb.Gradients{g.Gradients, g.Counterfactuals[0]} {
		dw := satlab.Values(grad.Layers[0].Weights)[0]
		db := satlab.Values(grad.Layers[0].Biases)[0]
		res.GradW[grad.Loss] = dw
		res.Attenuation[grad.Loss] = grad.Saturation.OutputAttenuation
		fmt.Fprintf(out, "%5s %10.6f %10.6f %10.6f %12.6f\n", shortLoss(grad.Loss), grad.LossValue, dw, db,
			grad.Saturation.OutputAttenuation)
	}
	fmt.Fprintf(out, "ratio dC/dw bce/mse = %.1f\n", res.GradW[pb.Loss_LOSS_BCE]/res.GradW[pb.Loss_LOSS_MSE])

	fmt.Fprintf(out, "\ntraining %d steps, SGD lr=%g\n", steps, lr)
	fmt.Fprintf(out, "%5s %10s %8s %10s %8s\n", "step", "mse loss", "mse a", "bce loss", "bce a")
	every := steps / 6
	if every < 1 {
		every = 1
	}
	for step := 0; step <= steps; step++ {
		if step > 0 {
			for _, loss := range losses {
				if _, err := c.TrainStep(ctx, nets[loss], batch); err != nil {
					return nil, err
				}
			}
		}
		if step%every != 0 && step != steps {
			continue
		}
		// Loss and a after `step` steps: Evaluate and Forward read the
		// parameters without changing them.
		for _, loss := range losses {
			ev, err := c.Evaluate(ctx, nets[loss], batch)
			if err != nil {
				return nil, err
			}
			fw, err := c.Forward(ctx, nets[loss], x, false)
			if err != nil {
				return nil, err
			}
			res.FinalLoss[loss] = ev.Loss
			res.FinalA[loss] = satlab.Values(fw.Outputs)[0]
		}
		fmt.Fprintf(out, "%5d %10.6f %8.4f %10.6f %8.4f\n", step, res.FinalLoss[pb.Loss_LOSS_MSE],
			res.FinalA[pb.Loss_LOSS_MSE], res.FinalLoss[pb.Loss_LOSS_BCE], res.FinalA[pb.Loss_LOSS_BCE])
	}
	return res, nil
}

func shortLoss(l pb.Loss) string {
	switch l {
	case pb.Loss_LOSS_MSE:
		return "mse"
	case pb.Loss_LOSS_BCE:
		return "bce"
	case pb.Loss_LOSS_CCE:
		return "cce"
	}
	return l.String()
}

func main() {
	server := flag.String("server", envOr("SATLAB_SERVER", "127.0.0.1:50051"), "server address")
	steps := flag.Int("steps", 300, "training steps")
	lr := flag.Float64("lr", 0.15, "SGD learning rate")
	flag.Parse()
	c, err := satlab.Dial(*server)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	if _, err := run(context.Background(), c, *steps, *lr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

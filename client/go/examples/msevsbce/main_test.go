package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"satlab/internal/livetest"
	pb "satlab/satlabv1"
)

// The example reproduces docs/saturation.md's single-neuron numbers.
func TestMseVsBce(t *testing.T) {
	s := livetest.Start(t)
	defer s.Stop(15 * time.Second)
	c := s.Client(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var out strings.Builder
	r, err := run(ctx, c, 300, 0.15, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	check := func(what string, got, want, tol float64) {
		t.Helper()
		if d := got - want; d > tol || d < -tol {
			t.Errorf("%s = %.7g, want %.7g ± %g", what, got, want, tol)
		}
	}
	mse, bce := pb.Loss_LOSS_MSE, pb.Loss_LOSS_BCE
	check("mse dC/dw", r.GradW[mse], 0.017345, 5e-7)
	check("bce dC/dw", r.GradW[bce], 0.982014, 5e-7)
	check("mse attenuation", r.Attenuation[mse], 0.0176627, 5e-8)
	check("bce attenuation", r.Attenuation[bce], 1, 1e-12)
	// docs/saturation.md, nielsen from w=2 b=2: loss@300 and a@300.
	check("mse loss@300", r.FinalLoss[mse], 0.0205737, 5e-8)
	check("bce loss@300", r.FinalLoss[bce], 0.0120814, 5e-8)
	check("mse a@300", r.FinalA[mse], 0.203, 5e-4)
	check("bce a@300", r.FinalA[bce], 0.0120, 5e-5)
	if !strings.Contains(out.String(), "ratio dC/dw bce/mse = 56.6") {
		t.Errorf("output lacks the bce/mse ratio line:\n%s", out.String())
	}
}

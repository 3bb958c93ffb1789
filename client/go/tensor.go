package satlab

import (
	"fmt"

	pb "satlab/satlabv1"
)

// Matrix returns a float64 tensor of shape [rows, cols] (row-major values).
// It panics when len(values) != rows*cols: a programming error, not input.
func Matrix(rows, cols int, values []float64) *pb.Tensor {
	if len(values) != rows*cols {
		panic(fmt.Sprintf("satlab.Matrix: %d values for shape [%d, %d]", len(values), rows, cols))
	}
	return &pb.Tensor{Shape: []int64{int64(rows), int64(cols)}, DoubleValues: append([]float64(nil), values...)}
}

// Matrix32 is Matrix with float32 values.
func Matrix32(rows, cols int, values []float32) *pb.Tensor {
	if len(values) != rows*cols {
		panic(fmt.Sprintf("satlab.Matrix32: %d values for shape [%d, %d]", len(values), rows, cols))
	}
	return &pb.Tensor{Shape: []int64{int64(rows), int64(cols)}, FloatValues: append([]float32(nil), values...)}
}

// Vector returns a float64 tensor of shape [len(values)].
func Vector(values ...float64) *pb.Tensor {
	return &pb.Tensor{Shape: []int64{int64(len(values))}, DoubleValues: append([]float64(nil), values...)}
}

// Batch returns a minibatch of inputs and targets.
func Batch(inputs, targets *pb.Tensor) *pb.Minibatch {
	return &pb.Minibatch{Inputs: inputs, Targets: targets}
}

// Values returns a tensor's values as float64, whichever dtype it carries.
func Values(t *pb.Tensor) []float64 {
	if t == nil {
		return nil
	}
	if len(t.FloatValues) > 0 {
		out := make([]float64, len(t.FloatValues))
		for i, v := range t.FloatValues {
			out[i] = float64(v)
		}
		return out
	}
	return append([]float64(nil), t.DoubleValues...)
}

// Sgd returns an SGD optimizer.
func Sgd(learningRate, momentum float64) *pb.Optimizer {
	return &pb.Optimizer{Kind: &pb.Optimizer_Sgd{Sgd: &pb.Sgd{LearningRate: learningRate, Momentum: momentum}}}
}

// Adam returns an Adam optimizer (zero betas/epsilon mean the server's defaults).
func Adam(learningRate float64) *pb.Optimizer {
	return &pb.Optimizer{Kind: &pb.Optimizer_Adam{Adam: &pb.Adam{LearningRate: learningRate}}}
}

// Layer returns a LayerSpec.
func Layer(units int32, activation pb.Activation) *pb.LayerSpec {
	return &pb.LayerSpec{Units: units, Activation: activation}
}

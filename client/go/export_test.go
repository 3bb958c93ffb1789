package satlab_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"satlab"
	pb "satlab/satlabv1"
)

// ExportNetwork into a buffer, ImportNetwork from it under a new id: the
// same parameters and the same next step; the id again is ALREADY_EXISTS,
// a damaged file DATA_LOSS.
func TestExportImportRoundTrip(t *testing.T) {
	c := server.Client(t)
	defer c.Close()
	ctx := ctxT(t)
	net := create(t, c, neuronSpec(pb.Loss_LOSS_BCE))
	if _, err := c.TrainStep(ctx, net.Name, neuronBatch()); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	n, err := c.ExportNetwork(ctx, net.Name, &file)
	if err != nil || n != int64(file.Len()) || !bytes.HasPrefix(file.Bytes(), []byte("SLNS")) {
		t.Fatalf("ExportNetwork = %d, %v (%d bytes)", n, err, file.Len())
	}
	id := unique("go-copy")
	copied, err := c.ImportNetwork(ctx, bytes.NewReader(file.Bytes()), int64(file.Len()), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteNetwork(ctx, copied.Name) })
	if copied.Name != "networks/"+id || copied.Step != 1 {
		t.Fatalf("ImportNetwork returned %v", copied)
	}
	a, err := c.GetParameters(ctx, net.Name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.GetParameters(ctx, copied.Name)
	if err != nil || !proto.Equal(a, b) {
		t.Fatalf("parameters differ: %v vs %v (%v)", a, b, err)
	}
	sa, errA := c.TrainStep(ctx, net.Name, neuronBatch())
	sb, errB := c.TrainStep(ctx, copied.Name, neuronBatch())
	if errA != nil || errB != nil || sa.Loss != sb.Loss {
		t.Fatalf("next step: %v %v / %v %v", sa, errA, sb, errB)
	}
	_, err = c.ImportNetwork(ctx, bytes.NewReader(file.Bytes()), int64(file.Len()), id)
	wantCode(t, "ImportNetwork again", err, satlab.ErrAlreadyExists)
	damaged := append([]byte(nil), file.Bytes()...)
	damaged[len(damaged)/2] ^= 1
	_, err = c.ImportNetwork(ctx, bytes.NewReader(damaged), int64(len(damaged)), unique("go-bad"))
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("damaged file: %v, want DATA_LOSS", err)
	}
}

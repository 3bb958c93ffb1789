package satlab

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"

	pb "satlab/satlabv1"
)

// importChunkBytes is the file data per ImportNetworkRequest (the server
// accepts up to 4 MiB per message).
const importChunkBytes = 1 << 20

// ExportNetwork writes the network's export file (docs/storage.md: spec,
// parameters, optimizer state, step; a consistent snapshot) to w as its
// chunks arrive, and returns the bytes written.
func (c *Client) ExportNetwork(ctx context.Context, name string, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.ExportNetwork(ctx, &pb.ExportNetworkRequest{Name: NetworkName(name)})
	if err != nil {
		return 0, wrap("ExportNetwork", err)
	}
	var done int64
	total := int64(-1)
	for {
		m, err := stream.Recv()
		if err != nil {
			if err = endOfStream("ExportNetwork", err); err != nil {
				return done, err
			}
			if done != total {
				return done, &Error{RPC: "ExportNetwork", Code: codes.DataLoss,
					Message: fmt.Sprintf("the stream ended after %d of %d bytes", done, total)}
			}
			return done, nil
		}
		if m.Offset != done {
			return done, &Error{RPC: "ExportNetwork", Code: codes.DataLoss,
				Message: fmt.Sprintf("chunk at offset %d, expected %d", m.Offset, done)}
		}
		total = m.TotalBytes
		if _, err := w.Write(m.Data); err != nil {
			return done, err
		}
		done += int64(len(m.Data))
	}
}

// ImportNetwork creates networks/{networkID} (empty: server-assigned) from
// the size bytes of an export file read from r, sent in 1 MiB chunks. All
// or nothing.
func (c *Client) ImportNetwork(ctx context.Context, r io.Reader, size int64, networkID string) (*pb.Network, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.ImportNetwork(ctx)
	if err != nil {
		return nil, wrap("ImportNetwork", err)
	}
	req := &pb.ImportNetworkRequest{NetworkId: networkID, TotalBytes: size}
	buf := make([]byte, importChunkBytes)
	var done int64
	for first := true; first || done < size; first = false {
		n := size - done
		if n > importChunkBytes {
			n = importChunkBytes
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, fmt.Errorf("ImportNetwork: reading the file after %d of %d bytes: %w", done, size, err)
		}
		req.Data = buf[:n]
		if err := stream.Send(req); err != nil {
			break // the server ended the call; CloseAndRecv has its status
		}
		done += n
		req = &pb.ImportNetworkRequest{}
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		return nil, wrap("ImportNetwork", err)
	}
	return res.Network, nil
}

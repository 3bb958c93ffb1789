package satlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "satlab/satlabv1"
)

// endOfStream maps a stream's final Recv error: io.EOF (status OK) is nil.
func endOfStream(rpc string, err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return wrap(rpc, err)
}

// TrainOptions configure Train and StartTraining.
type TrainOptions struct {
	// ReportEvery: the server sends a StepResult every this many steps (and
	// for the last step); 0 means 1.
	ReportEvery int32
	// MaxResumes: how often Train reopens the stream after UNAVAILABLE.
	MaxResumes int
}

// TrainSession is one open Train stream. Send and Recv may run on different
// goroutines (one each), as grpc-go allows.
type TrainSession struct {
	stream pb.TrainingService_TrainClient
	cancel context.CancelFunc
}

// StartTraining opens a Train stream on a network. The first Send carries
// the name and report_every. Cancel ctx (or call Close) to abandon it.
func (c *Client) StartTraining(ctx context.Context, name string, reportEvery int32) (*TrainSession, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.Train(ctx)
	if err != nil {
		cancel()
		return nil, wrap("Train", err)
	}
	s := &TrainSession{stream: stream, cancel: cancel}
	// The header message: name and report_every, no batch. Sending it now
	// makes the server claim the writer slot before the first minibatch.
	if err := stream.Send(&pb.TrainRequest{Name: NetworkName(name), ReportEvery: reportEvery}); err != nil {
		err = s.finish(err)
		cancel()
		return nil, err
	}
	return s, nil
}

// Send sends one minibatch. On an error the stream is broken: Recv returns
// the status.
func (s *TrainSession) Send(batch *pb.Minibatch) error {
	if err := s.stream.Send(&pb.TrainRequest{Batch: batch}); err != nil {
		return s.finish(err)
	}
	return nil
}

// CloseSend half-closes: the server applies what it has and ends the stream.
func (s *TrainSession) CloseSend() error { return wrap("Train", s.stream.CloseSend()) }

// Recv returns the next result; io.EOF when the stream ended OK, otherwise
// a *Error with the stream's status.
func (s *TrainSession) Recv() (*pb.TrainResponse, error) {
	r, err := s.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, wrap("Train", err)
	}
	return r, nil
}

// Close cancels the stream (if still open) and releases it.
func (s *TrainSession) Close() { s.cancel() }

// finish turns a Send error into the stream's status: grpc-go's Send
// returns io.EOF when the server ended the stream, whose status Recv holds.
func (s *TrainSession) finish(err error) error {
	if errors.Is(err, io.EOF) {
		for {
			if _, rerr := s.stream.Recv(); rerr != nil {
				if errors.Is(rerr, io.EOF) {
					return &Error{RPC: "Train", Code: codes.Unknown, Message: "stream closed by the server with OK while sending"}
				}
				return wrap("Train", rerr)
			}
		}
	}
	return wrap("Train", err)
}

// Train streams batches through a Train session and returns the last
// StepResult, calling onResult (may be nil) for every result received.
//
// Resuming: when the stream breaks with UNAVAILABLE (a restart, a dropped
// connection) or INTERNAL "RST_STREAM" (what nginx's gRPC proxy sends when
// the replica behind the stream dies; docs/deploy.md) and fewer than
// opts.MaxResumes resumes have happened, Train
// waits for the connection to come back, reopens the stream and resends
// from the first minibatch the server did not apply. That count is the
// network's step now minus its step before the first attempt, as in the C++
// client's Client::Train: the last batches_applied the client saw may lag
// behind (results come every ReportEvery steps and the last ones may be lost
// with the stream), the step count cannot. A resumed stream that meets
// ABORTED before any result is retried the same way: the server may not
// have noticed the broken stream yet, which still holds the writer slot.
// Exact while nobody else trains the network.
func (c *Client) Train(ctx context.Context, name string, batches []*pb.Minibatch, opts TrainOptions,
	onResult func(*pb.TrainResponse)) (*pb.StepResult, error) {
	before, err := c.GetNetwork(ctx, name)
	if err != nil {
		return nil, err
	}
	next := 0
	var last *pb.StepResult
	for attempt := 0; ; attempt++ {
		received := 0
		err := c.trainOnce(ctx, name, batches[next:], opts.ReportEvery, func(r *pb.TrainResponse) {
			received++
			last = r.Result
			if onResult != nil {
				onResult(r)
			}
		})
		if err == nil {
			return last, nil
		}
		if !resumable(err, attempt > 0, received) || attempt >= opts.MaxResumes {
			return last, err
		}
		// Back off a little (50, 100, 200 ms, ...) so that the old stream can end.
		select {
		case <-ctx.Done():
			return last, wrap("Train", ctx.Err())
		case <-time.After(time.Duration(50<<uint(min(attempt, 5))) * time.Millisecond):
		}
		// WaitForReady: the channel is reconnecting; a fail-fast call would
		// meet UNAVAILABLE again.
		rctx, cancel := c.unaryCtx(ctx)
		now, gerr := c.rpc.GetNetwork(rctx, &pb.GetNetworkRequest{Name: NetworkName(name)}, grpc.WaitForReady(true))
		cancel()
		if gerr != nil {
			return last, wrap("GetNetwork", gerr)
		}
		next = int(now.Network.Step - before.Step)
		if next > len(batches) || next < 0 {
			return last, &Error{RPC: "Train", Code: codes.DataLoss, Message: fmt.Sprintf(
				"%s advanced by %d steps but %d minibatches were sent: another writer trained it meanwhile",
				NetworkName(name), next, len(batches))}
		}
		if next == len(batches) {
			return last, nil
		}
	}
}

// resumable says whether Train may reopen a stream that ended with err
// (see Train): resumed is whether this stream was itself a resume, received
// how many results it brought. Resuming is safe whatever the cause: the
// network's step says what the server applied.
func resumable(err error, resumed bool, received int) bool {
	switch Code(err) {
	case codes.Unavailable:
		return true
	case codes.Internal:
		// *Error carries its status (GRPCStatus), a raw gRPC error too.
		return strings.Contains(status.Convert(err).Message(), "RST_STREAM")
	case codes.Aborted:
		return resumed && received == 0
	}
	return false
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// trainOnce runs one stream over batches: a goroutine writes while this one
// reads, so results stream back while minibatches are still going out.
func (c *Client) trainOnce(ctx context.Context, name string, batches []*pb.Minibatch, reportEvery int32,
	onResult func(*pb.TrainResponse)) error {
	s, err := c.StartTraining(ctx, name, reportEvery)
	if err != nil {
		return err
	}
	defer s.Close()
	go func() {
		for _, b := range batches {
			// A failed Send means the stream ended; Recv reports why.
			if s.stream.Send(&pb.TrainRequest{Batch: b}) != nil {
				return
			}
		}
		_ = s.stream.CloseSend()
	}()
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		onResult(r)
	}
}

// SendBatches sends several minibatches in one message (TrainRequest.batches,
// issue 15 item 4): the server applies them in order, each one step, bitwise
// as if each came alone, so a stream of tiny steps is not bound by one
// message per step (report every len(batches) steps to match). A bad
// minibatch fails the whole message: none of it is applied. On an error the
// stream is broken: Recv returns the status.
func (s *TrainSession) SendBatches(batches []*pb.Minibatch) error {
	if err := s.stream.Send(&pb.TrainRequest{Batches: batches}); err != nil {
		return s.finish(err)
	}
	return nil
}

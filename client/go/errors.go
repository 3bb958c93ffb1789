package satlab

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed RPC: the gRPC status code and the server's message
// (which names the field, what was expected and what arrived). Match the
// code with errors.Is against the sentinels below:
//
//	if errors.Is(err, satlab.ErrNotFound) { ... }
//
// status.FromError and status.Code also work on it (GRPCStatus).
type Error struct {
	// RPC is the method that failed, e.g. "CreateNetwork".
	RPC string
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's (or gRPC's) status message.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("satlab %s: %s: %s", e.RPC, e.Code, e.Message)
}

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Is matches a *Error with the same code, so errors.Is(err, ErrAborted)
// holds for any ABORTED error whatever its message.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.RPC == "" && t.Message == "" && t.Code == e.Code
	}
	return false
}

// Sentinels of the codes satlab returns (see the error table at the top of
// proto/satlab/v1/training_service.proto).
var (
	// ErrInvalidArgument: malformed request (bad shape, NaN/Inf, unknown enum,
	// empty batch, incompatible activation/loss, malformed name).
	ErrInvalidArgument = &Error{Code: codes.InvalidArgument}
	// ErrNotFound: no network of that name.
	ErrNotFound = &Error{Code: codes.NotFound}
	// ErrAlreadyExists: CreateNetwork with a network_id in use.
	ErrAlreadyExists = &Error{Code: codes.AlreadyExists}
	// ErrAborted: another writer (TrainStep, SetParameters, a Train stream)
	// holds the network; retry when it finishes.
	ErrAborted = &Error{Code: codes.Aborted}
	// ErrResourceExhausted: over a server limit, or the executor queue is full.
	ErrResourceExhausted = &Error{Code: codes.ResourceExhausted}
	// ErrDeadlineExceeded: the context's deadline (or the client's default
	// timeout) passed.
	ErrDeadlineExceeded = &Error{Code: codes.DeadlineExceeded}
	// ErrCanceled: the context was canceled.
	ErrCanceled = &Error{Code: codes.Canceled}
	// ErrUnavailable: the server is unreachable or shutting down.
	ErrUnavailable = &Error{Code: codes.Unavailable}
	// ErrUnimplemented: the server lacks the method (or runs without metrics,
	// for WatchMetrics).
	ErrUnimplemented = &Error{Code: codes.Unimplemented}
)

// wrap turns a gRPC error into a *Error; nil stays nil.
func wrap(rpc string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		// Errors born in the client (a context that ended before the call)
		// still map onto a code.
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return &Error{RPC: rpc, Code: codes.DeadlineExceeded, Message: err.Error()}
		case errors.Is(err, context.Canceled):
			return &Error{RPC: rpc, Code: codes.Canceled, Message: err.Error()}
		}
		return &Error{RPC: rpc, Code: codes.Unknown, Message: err.Error()}
	}
	return &Error{RPC: rpc, Code: s.Code(), Message: s.Message()}
}

// Code returns the gRPC code of any error (codes.OK for nil).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

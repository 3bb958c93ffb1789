package satlab

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which broken streams Train reopens: the codes a restart, a dropped
// connection or nginx's reset of a dead replica's stream arrive with, and
// ABORTED only on a resumed stream that had no result yet.
func TestResumableCodes(t *testing.T) {
	rst := "stream terminated by RST_STREAM with error code: INTERNAL_ERROR"
	cases := []struct {
		name     string
		err      error
		resumed  bool
		received int
		want     bool
	}{
		{"unavailable", &Error{RPC: "Train", Code: codes.Unavailable, Message: "connection refused"}, false, 3, true},
		{"raw unavailable", status.Error(codes.Unavailable, "transport is closing"), false, 0, true},
		{"nginx reset", &Error{RPC: "Train", Code: codes.Internal, Message: rst}, false, 7, true},
		{"raw nginx reset", status.Error(codes.Internal, rst), false, 0, true},
		{"other internal", &Error{RPC: "Train", Code: codes.Internal, Message: "checksum mismatch"}, false, 0, false},
		{"aborted on a resume", &Error{RPC: "Train", Code: codes.Aborted, Message: "being written"}, true, 0, true},
		{"aborted after results", &Error{RPC: "Train", Code: codes.Aborted, Message: "being written"}, true, 2, false},
		{"aborted first stream", &Error{RPC: "Train", Code: codes.Aborted, Message: "being written"}, false, 0, false},
		{"invalid argument", &Error{RPC: "Train", Code: codes.InvalidArgument, Message: "batch.inputs"}, true, 0, false},
		{"not a status", errors.New("RST_STREAM"), false, 0, false},
	}
	for _, c := range cases {
		if got := resumable(c.err, c.resumed, c.received); got != c.want {
			t.Errorf("%s: resumable(%v, %v, %d) = %v, want %v", c.name, c.err, c.resumed, c.received, got, c.want)
		}
	}
}

package roster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc/metadata"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// ChunkSize is how much of the file each message carries; the file is never
// held in memory beyond one chunk.
const ChunkSize = 64 * 1024

// Import is a running ImportUsers stream: the file is sent from a
// goroutine while Rows yields the row results as they arrive.
type Import struct {
	stream  rosterv1.ImportService_ImportUsersClient
	cancel  context.CancelFunc
	sent    chan struct{} // closed when the sender is done; sendErr is then set
	sendErr error
	summary *rosterv1.ImportSummary
	jobID   string
}

// ImportCSV starts importing file (CSV, UTF-8 or Windows-1252) with options
// and sends it in ChunkSize pieces while the results come back. Read every
// result with Rows, then Summary. Cancelling ctx stops the job after the row
// in progress; what was imported stays, and the job's results can be read
// with ListImportRowResults.
func (c *Client) ImportCSV(ctx context.Context, file io.Reader, options *rosterv1.ImportOptions) (*Import, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Imports.ImportUsers(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	first := &rosterv1.ImportUsersRequest{Message: &rosterv1.ImportUsersRequest_Options{Options: options}}
	if err := stream.Send(first); err != nil {
		cancel()
		return nil, receiveError(stream, err)
	}
	run := &Import{stream: stream, cancel: cancel, sent: make(chan struct{})}
	go run.send(file)
	return run, nil
}

// send streams the file, then half-closes. A read error cancels the call:
// the server must not take a cut file for a whole one.
func (i *Import) send(file io.Reader) {
	i.sendErr = i.sendFile(file)
	close(i.sent)
	if i.sendErr != nil {
		i.cancel()
	}
}

func (i *Import) sendFile(file io.Reader) error {
	buffer := make([]byte, ChunkSize)
	for {
		n, err := file.Read(buffer)
		if n > 0 {
			// The message is marshalled before Send returns, so the buffer is reused.
			chunk := &rosterv1.ImportUsersRequest{Message: &rosterv1.ImportUsersRequest_Chunk{Chunk: buffer[:n]}}
			if i.stream.Send(chunk) != nil {
				// The call has ended (io.EOF); Recv tells why.
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return i.stream.CloseSend()
		}
		if err != nil {
			return fmt.Errorf("roster: reading the file: %w", err)
		}
	}
}

// JobID is the job's id, known from the response header before any row.
func (i *Import) JobID() string {
	if i.jobID == "" {
		if header, err := i.stream.Header(); err == nil {
			i.jobID = first(header, "roster-import-job-id")
		}
	}
	return i.jobID
}

// Rows yields each row result in file order; a failed call or file is
// yielded once as an error, and then Rows ends.
func (i *Import) Rows() iter.Seq2[*rosterv1.ImportRowResult, error] {
	return func(yield func(*rosterv1.ImportRowResult, error) bool) {
		defer i.cancel()
		for {
			response, err := i.stream.Recv()
			if err != nil {
				if sendErr := i.sendError(); sendErr != nil {
					err = sendErr
				} else if errors.Is(err, io.EOF) {
					err = errors.New("roster: the import ended without a summary")
				}
				yield(nil, err)
				return
			}
			switch message := response.Message.(type) {
			case *rosterv1.ImportUsersResponse_Row:
				if !yield(message.Row, nil) {
					return
				}
			case *rosterv1.ImportUsersResponse_Summary:
				i.summary = message.Summary
				if err := i.sendError(); err != nil {
					yield(nil, err)
				}
				return
			}
		}
	}
}

// Summary is the job's summary once Rows has ended without an error.
func (i *Import) Summary() *rosterv1.ImportSummary { return i.summary }

// sendError is the sender's error once it has finished, else nil.
func (i *Import) sendError() error {
	select {
	case <-i.sent:
		return i.sendErr
	default:
		return nil
	}
}

func receiveError(stream rosterv1.ImportService_ImportUsersClient, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
	return sendErr
}

func first(md metadata.MD, key string) string {
	if values := md.Get(key); len(values) > 0 {
		return values[0]
	}
	return ""
}

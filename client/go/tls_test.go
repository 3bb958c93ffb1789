package satlab_test

// The Go client over TLS and mutual TLS with an API key, against a real
// satlab-server started with throwaway certificates (made by
// tests/security/make_certs.sh with the openssl command, or taken from
// $SATLAB_TLS_CERTS). With $SATLAB_TLS_RECORDER (set by
// tests/security/clients_tls_test.py) the same call also goes to that
// test's recorder, which checks the key arrived as "authorization: Bearer".

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"satlab"
	"satlab/internal/livetest"
)

func tlsCerts(t *testing.T) string {
	if dir := os.Getenv("SATLAB_TLS_CERTS"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	out, err := exec.Command("bash", "../../tests/security/make_certs.sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make_certs.sh: %v: %s", err, out)
	}
	return dir
}

func TestTLSAndKey(t *testing.T) {
	dir := tlsCerts(t)
	file := func(name string) string { return filepath.Join(dir, name) }
	s := livetest.Start(t, "--tls_cert_file="+file("server.pem"), "--tls_key_file="+file("server.key"),
		"--tls_client_ca_file="+file("ca.pem"))
	defer func() {
		if err := s.Stop(15 * time.Second); err != nil {
			t.Errorf("satlab-server exited with %v: %s", err, s.Log())
		}
	}()
	mtls := satlab.Options{Timeout: 10 * time.Second, TLSCAFile: file("ca.pem"),
		TLSCertFile: file("client.pem"), TLSKeyFile: file("client.key"), APIKey: "k-go"}
	c, err := satlab.Dial(s.Address, mtls)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListNetworks(ctxT(t), 10, ""); err != nil {
		t.Fatalf("mTLS call: %v; server log: %s", err, s.Log())
	}

	// Without a client certificate the server refuses the handshake.
	noCert := satlab.Options{Timeout: 10 * time.Second, TLSCAFile: file("ca.pem")}
	c2, err := satlab.Dial(s.Address, noCert)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.ListNetworks(ctxT(t), 10, ""); satlab.Code(err) != codes.Unavailable {
		t.Errorf("without a client certificate: got %v, want Unavailable", err)
	}
	// One of cert/key alone is an error at Dial.
	if _, err := satlab.Dial(s.Address, satlab.Options{TLSCertFile: file("client.pem")}); err == nil {
		t.Errorf("TLSCertFile without TLSKeyFile: Dial succeeded")
	}

	if recorder := os.Getenv("SATLAB_TLS_RECORDER"); recorder != "" {
		r, err := satlab.Dial(recorder, mtls)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.ListNetworks(ctxT(t), 10, ""); err != nil {
			t.Fatalf("recorder: %v", err)
		}
	}
}

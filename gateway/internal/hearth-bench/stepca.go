package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// leafLifetime is the client certificates' life: inside step-ca's default TLS maximum (24 h),
// so that a rekey keeps it.
const leafLifetime = 20 * time.Hour

// runStepCAInit writes what step-ca needs to serve, as `step ca init` would: a root and an
// intermediate (ECDSA P-256, unencrypted keys), one JWK provisioner (step-ca wants at least
// one; nothing uses it) and ca.json, plus one client certificate per device signed by the
// intermediate in DIR/devices/<id>.pem. The certificates carry no step provisioner
// extension, which step-ca renews and rekeys (its no-op provisioner).
func runStepCAInit(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("dir", "", "directory to write (required)")
	n := fs.Int("devices", 0, "client certificates to issue (required)")
	port := fs.Int("port", 9443, "step-ca's listen port on 127.0.0.1")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *n <= 0 {
		return fmt.Errorf("%w: stepca-init needs --dir and --devices", errUsage)
	}
	if err := os.MkdirAll(filepath.Join(*dir, "devices"), 0o700); err != nil {
		return err
	}
	now := time.Now()
	rootKey, root, err := issue(nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "bench step-ca root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return err
	}
	intKey, inter, err := issue(root, rootKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "bench step-ca intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return err
	}
	provKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"root.crt":         pemCert(root),
		"intermediate.crt": pemCert(inter),
		"intermediate.key": pemKey(intKey),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*dir, name), data, 0o600); err != nil {
			return err
		}
	}
	conf := map[string]any{
		"root":     filepath.Join(*dir, "root.crt"),
		"crt":      filepath.Join(*dir, "intermediate.crt"),
		"key":      filepath.Join(*dir, "intermediate.key"),
		"address":  fmt.Sprintf("127.0.0.1:%d", *port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]string{"format": "text"},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{"type": "JWK", "name": "bench", "key": jwk(&provKey.PublicKey)}},
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.json"), data, 0o600); err != nil {
		return err
	}
	for i := range *n {
		id := fmt.Sprintf("dev-%06d", i)
		key, leaf, err := issue(inter, intKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: id}, DNSNames: []string{id}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(leafLifetime),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return err
		}
		pair := append(append(pemCert(leaf), pemCert(inter)...), pemKey(key)...)
		if err := os.WriteFile(filepath.Join(*dir, "devices", id+".pem"), pair, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "step-ca configuration in %s, %d client certificates\n", *dir, *n)
	return nil
}

// issue makes a P-256 key and a certificate of it from tmpl, signed by parent (self-signed
// when parent is nil).
func issue(parent *x509.Certificate, parentKey crypto.Signer, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// jwk returns the public JWK of k with its RFC 7638 thumbprint as kid.
func jwk(k *ecdsa.PublicKey) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	raw, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err) // a generated P-256 key always encodes
	}
	x, y := raw[1:33], raw[33:65]
	thumb := sha256.Sum256(fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64(x), b64(y)))
	return map[string]string{"use": "sig", "kty": "EC", "kid": b64(thumb[:]), "crv": "P-256", "alg": "ES256", "x": b64(x), "y": b64(y)}
}

// runRekey makes one /rekey call per device of DIR/devices, k at a time, each on a fresh
// mutual-TLS connection with the device's certificate (one handshake, as an agent renewing
// would), with a new P-256 key and its CSR.
func runRekey(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	url := fs.String("url", "", "step-ca, https://HOST:PORT (required)")
	dir := fs.String("dir", "", "the directory stepca-init wrote (required)")
	n := fs.Int("devices", 0, "rekey calls, one per device (required)")
	k := fs.Int("concurrency", 16, "calls in progress at once")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *url == "" || *dir == "" || *n <= 0 || *k <= 0 {
		return fmt.Errorf("%w: rekey needs --url, --dir and --devices", errUsage)
	}
	rootPEM, err := os.ReadFile(filepath.Join(*dir, "root.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	certs := make([]tls.Certificate, *n)
	for i := range certs {
		data, err := os.ReadFile(filepath.Join(*dir, "devices", fmt.Sprintf("dev-%06d.pem", i)))
		if err != nil {
			return err
		}
		if certs[i], err = tls.X509KeyPair(data, data); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var failed int
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for range *k {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := rekey(ctx, *url, roots, certs[i])
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, time.Since(t0))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	var p50, p99 time.Duration
	if len(lat) > 0 {
		p50, p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	// One line, parsed by scripts/bench.sh.
	fmt.Fprintf(stdout, "rekey: %d of %d in %.2f s, %.0f/s, %d at a time, p50 %.1f ms, p99 %.1f ms, %d failed\n",
		len(lat), *n, d.Seconds(), float64(len(lat))/d.Seconds(), *k, p50.Seconds()*1000, p99.Seconds()*1000, failed)
	if firstErr != nil {
		return fmt.Errorf("%d rekeys failed, the first: %w", failed, firstErr)
	}
	return nil
}

// rekey makes one /rekey call with a new key on a fresh connection authenticated by cert.
func rekey(ctx context.Context, url string, roots *x509.CertPool, cert tls.Certificate) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := cert.Leaf
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: leaf.Subject, DNSNames: leaf.DNSNames}, key)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/rekey", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Crt string `json:"crt"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rekey: %s: %.200s", resp.Status, data)
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Crt == "" {
		return fmt.Errorf("rekey: no certificate in the response: %.200s", data)
	}
	return nil
}

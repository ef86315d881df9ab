// fngate-kube-apiserver: a real Kubernetes API server for fngate's tests. One process runs
// an embedded etcd and kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver/app, the
// release pinned in go.mod), both on 127.0.0.1, with RBAC on, static-token authentication
// and a service-account issuer. No controllers run (no kube-controller-manager, no
// scheduler): tests create what controllers would (EndpointSlices, ServiceAccount tokens
// via TokenRequest).
//
// Everything lives in --data-dir (a temp dir, removed at exit, if not given):
//
//	etcd/            etcd's data
//	pki/apiserver.*  serving cert + key, self-signed by the API server on first start
//	pki/ca.crt       the CA of that cert (also in the kubeconfig)
//	pki/sa.key|.pub  service-account signing key (RSA, generated on first start)
//	admin-token      the admin bearer token (group system:masters), generated on first start
//	tokens.csv       --token-auth-file, rewritten on every start from the admin token,
//	                 --token and --token-file
//	kubeconfig       admin kubeconfig (unless --kubeconfig-out)
//
// So a second start with the same --data-dir and --secure-port is the same cluster: same
// objects, same URL, same CA, same admin token, service-account tokens still valid.
//
// When /readyz passes (and the default namespace exists) it writes the kubeconfig and
// prints ONE JSON line on stdout:
//
//	{"ready":true,"url":"https://127.0.0.1:PORT","kubeconfig":PATH,"port":PORT,
//	 "dataDir":DIR,"token":ADMIN_TOKEN,"ca":CA_PATH,"etcd":ETCD_URL,"pid":PID}
//
// SIGTERM/SIGINT: kube-apiserver shuts down gracefully, then etcd; exit 0. (A second signal
// exits at once, as kube-apiserver does.) Logs (klog, etcd's zap) go to stderr.
// Arguments after `--` are passed to kube-apiserver as they are (e.g. `-- --v=2`).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/version"  // as in cmd/kube-apiserver
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "time/tzdata" // as in cmd/kube-apiserver
)

// repeated string flag
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	dataDir       string
	securePort    int
	kubeconfigOut string
	tokens        multiFlag
	tokenFiles    multiFlag
	adminToken    string
	serviceCIDR   string
	saIssuer      string
	etcdFsync     bool
	shutdownLimit time.Duration
	apiserverArgs []string
}

func main() { os.Exit(run()) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fngate-kube-apiserver: "+format+"\n", args...)
}

func parseFlags() (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("fngate-kube-apiserver", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for etcd data, certs, keys, tokens and the kubeconfig; reused as is by a later start (default: a temp dir removed at exit)")
	fs.IntVar(&o.securePort, "secure-port", 0, "kube-apiserver HTTPS port on 127.0.0.1 (required; the tests reserve one with test/helpers/ports.ts)")
	fs.StringVar(&o.kubeconfigOut, "kubeconfig-out", "", "where to write the admin kubeconfig (default: DATA_DIR/kubeconfig)")
	fs.Var(&o.tokens, "token", "extra static token `name:token[:group1,group2]` (user and uid = name); repeatable")
	fs.Var(&o.tokenFiles, "token-file", "extra static tokens: a kube-apiserver --token-auth-file CSV (token,user,uid,\"g1,g2\"); repeatable")
	fs.StringVar(&o.adminToken, "admin-token", "", "admin bearer token, user admin in group system:masters (default: DATA_DIR/admin-token, generated once)")
	fs.StringVar(&o.serviceCIDR, "service-cluster-ip-range", "10.0.0.0/16", "Service ClusterIP range")
	fs.StringVar(&o.saIssuer, "service-account-issuer", "https://kubernetes.default.svc.cluster.local", "service-account token issuer (and API audience)")
	fs.BoolVar(&o.etcdFsync, "etcd-fsync", false, "let etcd fsync (off by default: tests don't survive machine crashes, and fsync stalls a busy machine; a clean or killed process loses nothing)")
	fs.DurationVar(&o.shutdownLimit, "shutdown-timeout", 30*time.Second, "after SIGTERM, exit anyway after this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	o.apiserverArgs = fs.Args() // after `--`
	if o.securePort < 1 || o.securePort > 65535 {
		return nil, fmt.Errorf("--secure-port %d: a port from 1 to 65535 is required", o.securePort)
	}
	return o, nil
}

func run() int {
	o, err := parseFlags()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		logf("%v", err)
		return 2
	}

	// First: it installs the SIGTERM/SIGINT handler (once per process) whose context
	// stops kube-apiserver; we use the same context for everything else.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()

	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "fngate-kube-apiserver-")
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer os.RemoveAll(dir)
		o.dataDir = dir
	}
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		logf("%v", err)
		return 1
	}
	if o.kubeconfigOut == "" {
		o.kubeconfigOut = filepath.Join(o.dataDir, "kubeconfig")
	} else if o.kubeconfigOut, err = filepath.Abs(o.kubeconfigOut); err != nil {
		logf("%v", err)
		return 1
	}
	pki := filepath.Join(o.dataDir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		logf("%v", err)
		return 1
	}

	if o.adminToken == "" {
		if o.adminToken, err = persistedToken(filepath.Join(o.dataDir, "admin-token")); err != nil {
			logf("admin token: %v", err)
			return 1
		}
	}
	tokenFile := filepath.Join(o.dataDir, "tokens.csv")
	if err := writeTokenFile(tokenFile, o); err != nil {
		logf("token file: %v", err)
		return 1
	}
	saKey, saPub := filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")
	if err := ensureServiceAccountKey(saKey, saPub); err != nil {
		logf("service-account key: %v", err)
		return 1
	}

	etcd, etcdURL, err := startEtcd(ctx, o)
	if err != nil {
		logf("etcd: %v", err)
		return 1
	}
	defer func() {
		etcd.Close()
		logf("etcd stopped")
	}()

	url := fmt.Sprintf("https://127.0.0.1:%d", o.securePort)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(o.securePort),
		"--cert-dir=" + pki, // apiserver.crt/.key: generated on first start, reused after
		"--authorization-mode=RBAC",
		"--token-auth-file=" + tokenFile,
		"--service-account-issuer=" + o.saIssuer,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=" + o.serviceCIDR,
		// The "kubernetes" Service's endpoints would be 127.0.0.1, which Endpoints reject.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	args = append(args, o.apiserverArgs...)
	cmd.SetArgs(args)

	go func() {
		if err := announceWhenReady(ctx, o, url, etcdURL, pki); err != nil && ctx.Err() == nil {
			logf("%v", err)
		}
	}()
	go func() {
		<-ctx.Done()
		time.Sleep(o.shutdownLimit)
		logf("shutdown took longer than %v; exiting", o.shutdownLimit)
		os.Exit(3)
	}()

	code := cli.Run(cmd) // returns when ctx is cancelled (SIGTERM) or on error
	if code == 0 && ctx.Err() == nil {
		code = 1 // never returns normally unless stopped
	}
	logf("kube-apiserver stopped (code %d)", code)
	return code
}

func persistedToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !os.IsNotExist(err) {
		return "", err
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	t := hex.EncodeToString(buf)
	return t, os.WriteFile(path, []byte(t+"\n"), 0o600)
}

// writeTokenFile writes kube-apiserver's --token-auth-file: token,user,uid,"group1,group2".
func writeTokenFile(path string, o *options) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	records := [][]string{{o.adminToken, "admin", "admin", "system:masters"}}
	for _, t := range o.tokens {
		parts := strings.SplitN(t, ":", 3)
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return fmt.Errorf("--token %q: want name:token[:group1,group2]", t)
		}
		rec := []string{parts[1], parts[0], parts[0]}
		if len(parts) == 3 && parts[2] != "" {
			rec = append(rec, parts[2])
		}
		records = append(records, rec)
	}
	if err := w.WriteAll(records); err != nil {
		return err
	}
	for _, f := range o.tokenFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		buf.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	return writeFileAtomic(path, buf.Bytes(), 0o600)
}

func ensureServiceAccountKey(keyPath, pubPath string) error {
	var key *rsa.PrivateKey
	if b, err := os.ReadFile(keyPath); err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return fmt.Errorf("%s: no PEM block", keyPath)
		}
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return fmt.Errorf("%s: %w", keyPath, err)
		}
	} else if os.IsNotExist(err) {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return err
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
	} else {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return writeFileAtomic(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

func startEtcd(ctx context.Context, o *options) (*embed.Etcd, string, error) {
	// Port 0: etcd listens on whatever port the kernel gives it, and the API server is told the
	// address it got (e.Clients[0] below), so no port is picked in advance and none can be taken
	// in between. Nothing dials the peer URL (one member) or the advertised client URL; the
	// grpc-gateway, which would dial the listen URL as written, is off.
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:0"}

	cfg := embed.NewConfig()
	cfg.Name = "fngate-test"
	cfg.Dir = filepath.Join(o.dataDir, "etcd")
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.UnsafeNoFsync = !o.etcdFsync
	cfg.EnableGRPCGateway = false

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, "", ctx.Err()
	}
	go func() {
		if err, ok := <-e.Err(); ok && err != nil {
			logf("etcd error: %v", err)
		}
	}()
	return e, "http://" + e.Clients[0].Addr().String(), nil
}

// announceWhenReady polls /readyz (admin token) and the default namespace, then writes
// the kubeconfig and prints the ready line.
func announceWhenReady(ctx context.Context, o *options, url, etcdURL, pki string) error {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // CA read below
	}
	ok := func(path string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+o.adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for !ok("/readyz") || !ok("/api/v1/namespaces/default") {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	client.CloseIdleConnections()

	caPath := filepath.Join(pki, "ca.crt")
	ca, err := servingCA(filepath.Join(pki, "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("reading the serving CA: %w", err)
	}
	if err := writeFileAtomic(caPath, ca, 0o644); err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["fngate-test"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: ca}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: o.adminToken}
	kc.Contexts["fngate-test"] = &clientcmdapi.Context{Cluster: "fngate-test", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "fngate-test"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.kubeconfigOut), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(o.kubeconfigOut, b, 0o600); err != nil {
		return err
	}
	line, err := json.Marshal(map[string]any{
		"ready": true, "url": url, "kubeconfig": o.kubeconfigOut, "port": o.securePort,
		"dataDir": o.dataDir, "token": o.adminToken, "ca": caPath, "etcd": etcdURL, "pid": os.Getpid(),
	})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(line, '\n'))
	logf("ready at %s (kubeconfig %s)", url, o.kubeconfigOut)
	return err
}

// servingCA: the CA certificate of the self-signed serving cert kube-apiserver generated
// (apiserver.crt holds the leaf, then its CA).
func servingCA(certFile string) ([]byte, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		if c.IsCA {
			return pem.EncodeToMemory(block), nil
		}
	}
	return nil, fmt.Errorf("%s: no CA certificate", certFile)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

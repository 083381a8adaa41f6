// Command testetcd is a real etcd server for the tests, built from etcd's
// embed package so that a machine with only Go can run it. It listens on
// loopback, prints "client-url=URL" on stdout once it serves, and runs
// until SIGTERM or SIGINT. It is never part of the product binary.
//
//	testetcd --data-dir DIR [--client-url http://127.0.0.1:0] [--peer-url http://127.0.0.1:0]
//	         [--cert-file F --key-file F [--trusted-ca-file F]]
//
// With --cert-file the clients are served over TLS (an https client URL);
// with --trusted-ca-file too, a client must show a certificate it signed.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	os.Exit(run())
}

func run() int {
	dataDir := flag.String("data-dir", "", "the member's data directory (required)")
	clientURL := flag.String("client-url", "http://127.0.0.1:0", "client URL to listen on (port 0: any free port)")
	peerURL := flag.String("peer-url", "http://127.0.0.1:0", "peer URL to listen on")
	certFile := flag.String("cert-file", "", "server certificate (PEM): serve clients over TLS")
	keyFile := flag.String("key-file", "", "key of --cert-file (PEM)")
	trustedCA := flag.String("trusted-ca-file", "", "CA (PEM) that must sign the clients' certificates")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "testetcd: --data-dir is required")
		return 2
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testetcd: --client-url: %v\n", err)
		return 2
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testetcd: --peer-url: %v\n", err)
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Dir = *dataDir
	cfg.Name = "test"
	cfg.LogLevel = "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	scheme := "http"
	if *certFile != "" {
		scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *trustedCA, ClientCertAuth: *trustedCA != ""}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testetcd: start: %v\n", err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "testetcd: not ready after 30s")
		return 1
	}
	fmt.Printf("client-url=%s://%s\n", scheme, e.Clients[0].Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "testetcd: %v\n", err)
		return 1
	}
	return 0
}

// Command securedcheck checks the Go SDK against a secured write node (run by test.sh
// secured, from client-sdk/test-sdks.sh), like client-sdk/python/tests/secured_check.py:
// TLS with the cluster's CA, a client certificate (the node requires one: mTLS), a server
// name override (the certificate names only --server-name; the node is dialled by IP
// address), and bearer tokens: with the right token transfers work; without one, or with a
// wrong one, calls are UNAUTHENTICATED; a token without the scope is PERMISSION_DENIED;
// without the client certificate or the server name override no connection is made.
//
//	WALLET_TOKEN=... WALLET_READ_TOKEN=... securedcheck --write 127.0.0.1:PORT --certs DIR --server-name NAME
//
// DIR holds ca.crt, client.crt and client.key (walletctl dev-certs --out DIR --host NAME);
// WALLET_TOKEN has the admin, issue, transfer and read scopes, WALLET_READ_TOKEN only read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"wallet.ledger/client-sdk/go/wallet"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go secured checks: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

var quick = wallet.RetryPolicy{CallTimeout: 2 * time.Second, TotalDeadline: 3 * time.Second, AttemptsMax: 3,
	BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}

// expect: err is a *Rejected (definite) or an *Indefinite, with code and, if given, reason.
func expect(err error, definite bool, code codes.Code, reason, what string) {
	if err == nil {
		fail("%s: expected %s, the call succeeded", what, wallet.CodeName(code))
	}
	var rejected *wallet.Rejected
	var indefinite *wallet.Indefinite
	gotCode, gotReason := codes.Unknown, ""
	switch {
	case definite && errors.As(err, &rejected):
		gotCode, gotReason = rejected.Code, rejected.Reason
	case !definite && errors.As(err, &indefinite):
		gotCode, gotReason = indefinite.Code, indefinite.Reason
	default:
		fail("%s: expected a definite=%v error, got %T: %v", what, definite, err, err)
	}
	if gotCode != code || (reason != "" && gotReason != reason) {
		fail("%s: expected %s %s, got %v", what, wallet.CodeName(code), reason, err)
	}
}

func client(write string, tls wallet.TLSConfig, token *string) *wallet.WalletClient {
	opts := []wallet.Option{wallet.WithTLS(tls), wallet.WithRetryPolicy(quick)}
	if token != nil {
		opts = append(opts, wallet.WithToken(*token))
	}
	c, err := wallet.NewWalletClient([]string{write}, opts...)
	if err != nil {
		fail("client: %v", err)
	}
	return c
}

func main() {
	write := flag.String("write", "", "the secured write node, host:port")
	certs := flag.String("certs", "", "the walletctl dev-certs directory")
	serverName := flag.String("server-name", "", "the name in the node's certificate")
	flag.Parse()
	token, readToken := os.Getenv("WALLET_TOKEN"), os.Getenv("WALLET_READ_TOKEN")
	if *write == "" || *certs == "" || *serverName == "" || token == "" || readToken == "" {
		fail("--write, --certs, --server-name, WALLET_TOKEN and WALLET_READ_TOKEN are required")
	}
	tls := wallet.TLSConfig{
		CAFile:     filepath.Join(*certs, "ca.crt"),
		CertFile:   filepath.Join(*certs, "client.crt"),
		KeyFile:    filepath.Join(*certs, "client.key"),
		ServerName: *serverName,
	}
	prefix := "gosecure-" + wallet.NewTransactionID()[:8] + "-"
	issuer, alice := prefix+"issuer", prefix+"alice"
	ctx := context.Background()
	checks := 0
	pay := func(c *wallet.WalletClient) error {
		_, err := c.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: alice, Amount: "1.00", Currency: "USD"})
		return err
	}

	full := client(*write, tls, &token)
	readyBy := time.Now().Add(60 * time.Second) // the node may still be electing itself
	for {
		_, err := full.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true})
		if err == nil {
			break
		}
		if wallet.IsDefinite(err) || time.Now().After(readyBy) {
			fail("open the issuer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := full.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: alice, Currency: "USD"}); err != nil {
		fail("open alice: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = pay(full) }(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fail("a transfer over TLS with the token: %v", err)
		}
	}
	account, err := full.GetAccount(ctx, alice)
	if err != nil || account.GetAccount().GetBalance() != "20.00" {
		fail("alice after 20 transfers: %v %v", account, err)
	}
	full.Close()
	checks++

	noToken := client(*write, tls, nil)
	expect(pay(noToken), true, codes.Unauthenticated, wallet.ReasonMissingToken, "a transfer without a token")
	_, err = noToken.GetAccount(ctx, alice)
	expect(err, true, codes.Unauthenticated, wallet.ReasonMissingToken, "a read without a token")
	noToken.Close()
	wrong := "wrong-" + token
	wrongToken := client(*write, tls, &wrong)
	expect(pay(wrongToken), true, codes.Unauthenticated, wallet.ReasonInvalidToken, "a transfer with a wrong token")
	wrongToken.Close()
	reader := client(*write, tls, &readToken)
	account, err = reader.GetAccount(ctx, alice)
	if err != nil || account.GetAccount().GetBalance() != "20.00" {
		fail("a read with the read-only token: %v %v", account, err)
	}
	expect(pay(reader), true, codes.PermissionDenied, wallet.ReasonScopeDenied, "a transfer with the read-only token")
	reader.Close()
	checks += 4

	noClientCert := tls
	noClientCert.CertFile, noClientCert.KeyFile = "", ""
	noServerName := tls
	noServerName.ServerName = ""
	for name, settings := range map[string]wallet.TLSConfig{"no client certificate": noClientCert, "no server name": noServerName} {
		c := client(*write, settings, &token)
		_, err := c.GetAccount(ctx, alice)
		expect(err, false, codes.Unavailable, "", name)
		c.Close()
	}
	if _, err := wallet.NewWalletClient([]string{"http://" + *write}, wallet.WithTLS(tls)); err == nil {
		fail("http:// with TLS settings was accepted")
	} else if !errors.As(err, new(*wallet.ConfigError)) {
		fail("http:// with TLS settings: %v", err)
	}
	checks += 3
	fmt.Printf("go secured checks: %d passed\n", checks)
}

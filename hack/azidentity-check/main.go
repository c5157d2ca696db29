// azidentity-check gets a token from an Entra token endpoint with the Azure SDK for Go's
// azidentity (MSAL for Go underneath, as Azure Service Operator uses it) and makes one ARM GET
// (list resource groups) with armresources, both against the given endpoints. It checks that the
// arm-emulator answers a real third-party client as Azure does.
//
//	azidentity-check -authority URL -arm URL -ca FILE -tenant T -client-id C -subscription S
//	                 (-secret S | -assertion-file F)
//
// -secret uses NewClientSecretCredential; -assertion-file uses NewClientAssertionCredential with
// the file's content (a federated token, read on every token request, as workload identity does).
// On success it prints one line: OK <credential> resourceGroups=<names, comma-separated>, exit 0.
// On failure it prints the SDK's error on stderr and exits 1; bad usage exits 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
)

type args struct {
	authority, armEndpoint, ca, tenant, clientID, subscription, secret, assertionFile string
}

func parse() (args, error) {
	var a args
	flag.StringVar(&a.authority, "authority", "", "Entra authority host (the emulator's authority_host)")
	flag.StringVar(&a.armEndpoint, "arm", "", "ARM endpoint (the emulator's arm_endpoint)")
	flag.StringVar(&a.ca, "ca", "", "PEM file of the CA to trust (the emulator's ca_path)")
	flag.StringVar(&a.tenant, "tenant", "", "tenant id")
	flag.StringVar(&a.clientID, "client-id", "", "client id")
	flag.StringVar(&a.subscription, "subscription", "", "subscription id")
	flag.StringVar(&a.secret, "secret", "", "client secret (ClientSecretCredential)")
	flag.StringVar(&a.assertionFile, "assertion-file", "", "file holding a client assertion (ClientAssertionCredential)")
	flag.Parse()
	for name, v := range map[string]string{"authority": a.authority, "arm": a.armEndpoint, "ca": a.ca,
		"tenant": a.tenant, "client-id": a.clientID, "subscription": a.subscription} {
		if v == "" {
			return a, fmt.Errorf("-%s is required", name)
		}
	}
	if (a.secret == "") == (a.assertionFile == "") {
		return a, errors.New("exactly one of -secret and -assertion-file is required")
	}
	return a, nil
}

// clientOptions points the SDK at the given cloud and trusts only the given CA.
func clientOptions(a args) (azcore.ClientOptions, error) {
	pem, err := os.ReadFile(a.ca)
	if err != nil {
		return azcore.ClientOptions{}, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return azcore.ClientOptions{}, fmt.Errorf("no certificate in %s", a.ca)
	}
	transport := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
	}
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: a.authority,
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Audience: "https://management.azure.com", Endpoint: a.armEndpoint},
			},
		},
		Transport: transport,
		Retry:     policy.RetryOptions{MaxRetries: 2},
	}, nil
}

func credential(a args, opts azcore.ClientOptions) (azcore.TokenCredential, string, error) {
	// Instance discovery would ask login.microsoftonline.com about a host it does not know; an
	// emulated (or private) cloud turns it off, as Python's disable_instance_discovery does.
	if a.secret != "" {
		c, err := azidentity.NewClientSecretCredential(a.tenant, a.clientID, a.secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		return c, "ClientSecretCredential", err
	}
	read := func(context.Context) (string, error) {
		b, err := os.ReadFile(a.assertionFile)
		return strings.TrimSpace(string(b)), err
	}
	c, err := azidentity.NewClientAssertionCredential(a.tenant, a.clientID, read,
		&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	return c, "ClientAssertionCredential", err
}

func run(a args) (string, error) {
	opts, err := clientOptions(a)
	if err != nil {
		return "", err
	}
	cred, kind, err := credential(a, opts)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The token first, on its own, so that a refusal is reported as the credential's error.
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}}); err != nil {
		return "", err
	}
	groups, err := armresources.NewResourceGroupsClient(a.subscription, cred, &arm.ClientOptions{ClientOptions: opts})
	if err != nil {
		return "", err
	}
	var names []string
	pager := groups.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return "", err
		}
		for _, g := range page.Value {
			if g.Name != nil {
				names = append(names, *g.Name)
			}
		}
	}
	sort.Strings(names)
	return fmt.Sprintf("OK %s resourceGroups=%s", kind, strings.Join(names, ",")), nil
}

func main() {
	a, err := parse()
	if err != nil {
		fmt.Fprintln(os.Stderr, "azidentity-check:", err)
		os.Exit(2)
	}
	out, err := run(a)
	if err != nil {
		fmt.Fprintln(os.Stderr, "azidentity-check:", err)
		os.Exit(1)
	}
	fmt.Println(out)
}

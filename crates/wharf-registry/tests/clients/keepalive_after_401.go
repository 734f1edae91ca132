// A keep-alive client that is not ours (Go's net/http, as containerd, ORAS and crane use it)
// against wharf's registry: the same steps as keepalive_after_401.py.
//
// For each body size, through ONE connection (MaxConnsPerHost 1): start an upload with
// credentials, PUT the body without credentials (401 expected), then PUT it again with
// credentials (201 expected). The bodies carry no GetBody, so net/http cannot quietly resend a
// request on a fresh connection: a connection the server dropped without saying
// `Connection: close` fails the step instead of hiding.
//
// usage: go run keepalive_after_401.go HOST:PORT basic|token USER PASSWORD
// Prints one line per step; exits non-zero on the first failure.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"time"
)

var (
	addr, mode, user, password = os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	repo                       = "hostile/keepalive-go"
	client                     = &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1},
	}
	connections = 0
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

// exchange sends one request; the body (if any) has no GetBody, so it is never resent.
func exchange(method, path string, body []byte, headers map[string]string) (*http.Response, []byte) {
	var reader io.Reader
	if body != nil {
		reader = io.NopCloser(bytes.NewReader(body))
	}
	req, err := http.NewRequest(method, "http://"+addr+path, reader)
	if err != nil {
		fail("%s %s: %v", method, path, err)
	}
	req.ContentLength = int64(len(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			connections++
		}
	}}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := client.Do(req)
	if err != nil {
		fail("%s %s: %v", method, path, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		fail("%s %s: reading the answer: %v", method, path, err)
	}
	return resp, data
}

func expect(resp *http.Response, data []byte, status int, what string) {
	if resp.StatusCode != status {
		if len(data) > 300 {
			data = data[:300]
		}
		fail("%s: %d %q", what, resp.StatusCode, data)
	}
	fmt.Printf("ok %s: %d (connection: %q, connections so far: %d)\n", what, resp.StatusCode, resp.Header.Get("Connection"), connections)
}

func main() {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	auth := map[string]string{"Authorization": basic}
	if mode == "token" {
		scope := url.QueryEscape("repository:" + repo + ":pull,push")
		resp, data := exchange("GET", "/token?service=wharf-registry&scope="+scope, nil, auth)
		expect(resp, data, 200, "token")
		var token struct{ Token string }
		if err := json.Unmarshal(data, &token); err != nil {
			fail("token answer: %v", err)
		}
		auth = map[string]string{"Authorization": "Bearer " + token.Token}
	}
	for _, size := range []int{0, 2000, 300 * 1024, 1024 * 1024} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte((i*7 + size) % 251)
		}
		sum := sha256.Sum256(body)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		resp, data := exchange("POST", "/v2/"+repo+"/blobs/uploads/", nil, auth)
		expect(resp, data, 202, fmt.Sprintf("%s start upload for %d B", mode, size))
		location := resp.Header.Get("Location")
		sep := "?"
		if strings.Contains(location, "?") {
			sep = "&"
		}
		put := location + sep + "digest=" + url.QueryEscape(digest)
		plain := map[string]string{"Content-Type": "application/octet-stream"}
		resp, data = exchange("PUT", put, body, plain)
		expect(resp, data, 401, fmt.Sprintf("%s PUT %d B without credentials", mode, size))
		withAuth := map[string]string{"Content-Type": "application/octet-stream"}
		for k, v := range auth {
			withAuth[k] = v
		}
		resp, data = exchange("PUT", put, body, withAuth)
		expect(resp, data, 201, fmt.Sprintf("%s PUT %d B again with credentials", mode, size))
	}
	fmt.Println("all ok")
}

// Command registry serves an OCI distribution registry on one address, for the tests of Helm charts from OCI
// registries: go-containerregistry's registry (the one its own tests and crane use), blobs kept on disk.
//
//	registry -listen 127.0.0.1:5000 -dir /tmp/blobs [-user u -password p]
//
// With -user, every request needs HTTP basic credentials (as a private registry asks), answered 401 with a
// WWW-Authenticate challenge otherwise.
package main

import (
	"crypto/subtle"
	"flag"
	"log"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5000", "address to serve on")
	dir := flag.String("dir", "", "directory for blobs (default: in memory)")
	user := flag.String("user", "", "user name every request must present (basic auth)")
	password := flag.String("password", "", "password of -user")
	flag.Parse()
	opts := []registry.Option{registry.Logger(log.New(os.Stderr, "registry: ", log.LstdFlags))}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)))
	}
	var handler http.Handler = registry.New(opts...)
	if *user != "" {
		inner := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(*user)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(*password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	log.Printf("serving on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, handler))
}

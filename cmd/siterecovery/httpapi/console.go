package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// The web console: plain HTML, CSS and JavaScript, embedded in the binary
// (no build step, nothing fetched from elsewhere: the console works on an
// offline machine). It reads the API's queries, acts through its commands
// and follows /api/v1/stream.

//go:embed console
var consoleFiles embed.FS

// consoleHandler serves the console's files at / (every path no other
// route takes, so it answers 405 to anything but GET and HEAD).
func consoleHandler() http.Handler {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil { // the embedded directory is fixed at build time
		panic("console assets: " + err.Error())
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the console is read with GET", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
		files.ServeHTTP(w, r)
	})
}

// Package web is the browser client, embedded in the binary and served at /.
package web

import (
	"bytes"
	"embed"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Handler serves the browser client and the default avatar.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static") // the directory is embedded: Sub cannot fail
	files := http.FileServer(http.FS(sub))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /avatar/default.png", serveAvatar)
	mux.Handle("/", headers(files))
	return mux
}

// headers adds the security headers every page of the client gets.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache") // revalidate, so a new version is picked up at once
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' https: data: blob:; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

var avatarPNG = drawAvatar()

// drawAvatar paints a small panda face, so the default avatar needs no file.
func drawAvatar() []byte {
	const n = 96
	img := image.NewRGBA(image.Rect(0, 0, n, n))
	white := color.RGBA{0xf4, 0xf4, 0xf0, 0xff}
	black := color.RGBA{0x22, 0x22, 0x22, 0xff}
	bg := color.RGBA{0x9b, 0xd4, 0xb0, 0xff}
	in := func(x, y, cx, cy, r int) bool { dx, dy := x-cx, y-cy; return dx*dx+dy*dy <= r*r }
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			c := bg
			switch {
			case in(x, y, 22, 22, 14) || in(x, y, 74, 22, 14): // ears
				c = black
			case in(x, y, 36, 48, 9) || in(x, y, 60, 48, 9): // eye patches
				if in(x, y, 36, 46, 3) || in(x, y, 60, 46, 3) {
					c = white
				} else {
					c = black
				}
			case in(x, y, 48, 64, 5): // nose
				c = black
			case in(x, y, 48, 52, 34): // face
				c = white
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img) // encoding to memory cannot fail
	return b.Bytes()
}

var started = time.Now()

func serveAvatar(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	http.ServeContent(w, r, "default.png", started, bytes.NewReader(avatarPNG))
}

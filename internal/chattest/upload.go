package chattest

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
)

// PNG returns a w×h picture of random pixels, stored uncompressed: about 4·w·h
// bytes, and different on every call.
func PNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(rand.Uint32())
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Upload posts data as the multipart field "file" of POST /upload, as
// wx.uploadFile does, and returns the status and the JSON answer (nil when the
// answer is not JSON).
func (e *Env) Upload(s Session, filename string, data []byte) (status int, body map[string]any) {
	e.t.Helper()
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, err := mw.CreateFormFile("file", filename)
	if err == nil {
		_, err = fw.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		e.t.Fatalf("upload form: %v", err)
	}
	req, _ := http.NewRequest("POST", e.URL+"/upload", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-WX-Id", s.ID)
	req.Header.Set("X-WX-Skey", s.Skey)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &body) != nil {
		body = nil
	}
	return resp.StatusCode, body
}

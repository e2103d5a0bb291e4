package transport

import (
	"net/http"
	"strings"
)

// Session parameters come from headers or the query string; names are matched
// case-insensitively (the original client puts them in both).
const (
	paramCode          = "X-WX-Code"
	paramEncryptedData = "X-WX-Encrypted-Data"
	paramIV            = "X-WX-IV"
	paramID            = "X-WX-Id"
	paramSkey          = "X-WX-Skey"
)

// Param returns a session parameter from the request headers, else the query.
func Param(r *http.Request, name string) string {
	if v := r.Header.Get(name); v != "" {
		return v
	}
	for k, vs := range r.URL.Query() {
		if strings.EqualFold(k, name) && len(vs) > 0 && vs[0] != "" {
			return vs[0]
		}
	}
	return ""
}

package transport

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func requestWith(rawQuery string, header map[string]string) *http.Request {
	r := &http.Request{URL: &url.URL{Path: "/ws", RawQuery: rawQuery}, Header: http.Header{}}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

func TestParam(t *testing.T) {
	for _, tt := range []struct {
		name   string
		param  string
		query  string
		header map[string]string
		want   []string // any one of these (one element: exactly it)
	}{
		{"header", paramID, "", map[string]string{"X-WX-Id": "h"}, []string{"h"}},
		{"header name any case", paramID, "", map[string]string{"x-wx-id": "h"}, []string{"h"}},
		{"header kept as is", paramSkey, "", map[string]string{"X-WX-Skey": " a+b%20c "}, []string{" a+b%20c "}},
		{"query", paramID, "X-WX-Id=q", nil, []string{"q"}},
		{"query lower case", paramID, "x-wx-id=q", nil, []string{"q"}},
		{"query upper case", paramID, "X-WX-ID=q", nil, []string{"q"}},
		{"query mixed case", paramEncryptedData, "x-Wx-eNcRyPtEd-DaTa=q", nil, []string{"q"}},
		{"query unescaped", paramEncryptedData, "X-WX-Encrypted-Data=a%2Bb%2F%3D+c", nil, []string{"a+b/= c"}},
		{"query name escaped", paramIV, "x%2Dwx%2Div=q", nil, []string{"q"}},
		{"header wins over query", paramID, "x-wx-id=q", map[string]string{"X-WX-Id": "h"}, []string{"h"}},
		{"empty header falls back to query", paramID, "x-wx-id=q", map[string]string{"X-WX-Id": ""}, []string{"q"}},
		{"other header ignored", paramID, "", map[string]string{"X-WX-Skey": "s"}, []string{""}},
		{"first of repeated values", paramCode, "x-wx-code=a&x-wx-code=b", nil, []string{"a"}},
		{"empty value skipped", paramCode, "x-wx-code=&X-WX-CODE=b", nil, []string{"b"}},
		{"two spellings", paramCode, "x-wx-code=a&X-WX-CODE=b", nil, []string{"a", "b"}},
		{"empty query value", paramCode, "x-wx-code=", nil, []string{""}},
		{"query key without value", paramCode, "x-wx-code", nil, []string{""}},
		{"nothing", paramCode, "", nil, []string{""}},
		{"longer name", paramID, "x-wx-idx=q&xx-wx-id=q", nil, []string{""}},
		{"bad escape dropped", paramID, "x-wx-id=%zz", nil, []string{""}},
		{"bad pair does not hide a good one", paramID, "a=%zz&x-wx-id=q", nil, []string{"q"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Param(requestWith(tt.query, tt.header), tt.param)
			for _, w := range tt.want {
				if got == w {
					return
				}
			}
			t.Errorf("Param(%s) with query %q and headers %v = %q, want one of %q", tt.param, tt.query, tt.header, got, tt.want)
		})
	}
}

func FuzzParam(f *testing.F) {
	f.Add("x-wx-id=q", "")
	f.Add("X-WX-ID=q&x-wx-id=", "h")
	f.Fuzz(func(t *testing.T, rawQuery, header string) {
		h := map[string]string{}
		if header != "" {
			h[paramID] = header
		}
		got := Param(requestWith(rawQuery, h), paramID)
		if header != "" {
			if got != header {
				t.Fatalf("header %q, Param returned %q", header, got)
			}
			return
		}
		q, _ := url.ParseQuery(rawQuery) // keeps the pairs it can read
		var values []string              // every value of a key that matches paramID
		present := false                 // some matching key's first value is not empty
		for k, vs := range q {
			if strings.EqualFold(k, paramID) {
				values = append(values, vs...)
				present = present || vs[0] != ""
			}
		}
		if present && got == "" {
			t.Fatalf("query %q holds %s = %q, Param returned nothing", rawQuery, paramID, values)
		}
		if got != "" && !slices.Contains(values, got) {
			t.Fatalf("query %q: Param returned %q, not one of its values %q", rawQuery, got, values)
		}
	})
}

package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestChartIsValidXML(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chart Chart
	}{
		{"empty", Chart{Title: "nothing"}},
		{"log y with zeros and odd names", Chart{Title: "p99 <&> \"quoted\"", LogY: true, HLine: 100, Series: []Series{
			{Name: "a & b <c>", Points: [][2]float64{{0, 0}, {1e5, 3}, {2e6, 250}}},
			{Name: "single", Points: [][2]float64{{5e5, 0.4}}},
		}}},
		{"linear", Chart{Title: "rss", XLabel: "connections", YLabel: "KiB", Series: []Series{
			{Name: "x", Points: [][2]float64{{1000, 13.8}, {10000, 10.5}, {19000, 9.9}}},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.chart.WriteSVG(&b); err != nil {
				t.Fatal(err)
			}
			d := xml.NewDecoder(&b)
			var root string
			for {
				tok, err := d.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("invalid XML: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && root == "" {
					root = se.Name.Local
				}
			}
			if root != "svg" {
				t.Fatalf("root element %q, want svg", root)
			}
			if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
				t.Fatal("chart contains NaN or Inf coordinates")
			}
		})
	}
}

package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	Points [][2]float64 // (x, y)
}

// Chart is a line chart written as a self-contained SVG file.
type Chart struct {
	Title, XLabel, YLabel string
	LogY                  bool // log10 y axis (points with y <= 0 are left out)
	Series                []Series
	HLine                 float64 // a dashed reference line at this y (0 = none)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceStep picks 1, 2 or 5 × 10^k so that span has about n steps.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

// WriteSVG renders the chart.
func (c Chart) WriteSVG(w io.Writer) error {
	const W, H, left, right, top, bottom = 1020.0, 440.0, 70.0, 290.0, 40.0, 60.0
	pw, ph := W-left-right, H-top-bottom
	maxX, minY, maxY := 0.0, math.Inf(1), 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if c.LogY && p[1] <= 0 {
				continue
			}
			maxX = max(maxX, p[0])
			minY = min(minY, p[1])
			maxY = max(maxY, p[1])
		}
	}
	if c.HLine > 0 {
		maxY = max(maxY, c.HLine)
		minY = min(minY, c.HLine)
	}
	if maxX <= 0 {
		maxX = 1
	}
	xStep := niceStep(maxX, 6)
	maxX = math.Ceil(maxX/xStep) * xStep
	var y0, y1 float64 // axis range, in log10 units when LogY
	if c.LogY {
		if math.IsInf(minY, 1) {
			minY, maxY = 1, 10
		}
		y0, y1 = math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
		if y1 <= y0 {
			y1 = y0 + 1
		}
	} else {
		if maxY <= 0 {
			maxY = 1
		}
		y1 = math.Ceil(maxY/niceStep(maxY, 5)) * niceStep(maxY, 5)
	}
	px := func(x float64) float64 { return left + x/maxX*pw }
	py := func(y float64) float64 {
		if c.LogY {
			y = math.Log10(y)
		}
		return top + ph - (y-y0)/(y1-y0)*ph
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%g" height="%g" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%g" y="22" text-anchor="middle" font-size="15">%s</text>`+"\n", W/2, esc(c.Title))
	// grid and ticks
	for x := 0.0; x <= maxX+xStep/2; x += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n",
			px(x), top, px(x), top+ph, px(x), top+ph+16, esc(fmtTick(x)))
	}
	if c.LogY {
		for e := y0; e <= y1; e++ {
			y := math.Pow(10, e)
			fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, py(y), left+pw, py(y), left-6, py(y)+4, esc(fmtTick(y)))
		}
	} else {
		st := niceStep(y1, 5)
		for y := 0.0; y <= y1+st/2; y += st {
			fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, py(y), left+pw, py(y), left-6, py(y)+4, esc(fmtTick(y)))
		}
	}
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-18, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %g) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, esc(c.YLabel))
	if c.HLine > 0 {
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#999" stroke-dasharray="6 4"/>`+"\n", left, py(c.HLine), left+pw, py(c.HLine))
	}
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		dash := "" // after the palette runs out, lines repeat colours dashed
		if i >= len(palette) {
			dash = ` stroke-dasharray="7 3"`
		}
		var pts bytes.Buffer
		for _, p := range s.Points {
			if c.LogY && p[1] <= 0 {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(p[0]), py(p[1]))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p[0]), py(p[1]), col)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, dash, bytes.TrimSpace(pts.Bytes()))
		ly := top + 10 + float64(i)*18 // legend right of the plot
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2"%s/><text x="%g" y="%g">%s</text>`+"\n",
			left+pw+14, ly-4, left+pw+34, ly-4, col, dash, left+pw+40, ly, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

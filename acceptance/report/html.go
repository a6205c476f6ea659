package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prism-suite/prism/proto/capability"
)

//go:embed report.html.tmpl
var htmlTemplate string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"cell":     cell,
	"cssClass": func(s string) string { return strings.ReplaceAll(s, " ", "-") },
}).Parse(htmlTemplate))

// matrixRow is one capability across every report.
type matrixRow struct {
	Name    string
	Promise string
	Cells   []*Capability
}

type pageData struct {
	Generated string
	Reports   []*Report
	Rows      []matrixRow
}

// cell returns the capability's entry in r, or nil.
func cell(r *Report, name string) *Capability {
	for i := range r.Capabilities {
		if r.Capabilities[i].Name == name {
			return &r.Capabilities[i]
		}
	}
	return nil
}

// HTML renders a self-contained page (no external assets) with the
// capability × run matrix of reports, filters for failed and skipped specs,
// and each failure's message, reproduce command and the plugin's stderr tail.
func HTML(reports []*Report) ([]byte, error) {
	d := pageData{Generated: time.Now().UTC().Format(time.RFC3339), Reports: reports}
	for _, info := range capability.All() {
		row := matrixRow{Name: string(info.Name), Promise: info.Promise}
		for _, r := range reports {
			row.Cells = append(row.Cells, cell(r, string(info.Name)))
		}
		d.Rows = append(d.Rows, row)
	}
	var b bytes.Buffer
	if err := page.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render html: %w", err)
	}
	return b.Bytes(), nil
}

// WriteHTML writes report.html for reports into dir.
func WriteHTML(dir string, reports ...*Report) (string, error) {
	b, err := HTML(reports)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write html: %w", err)
	}
	return path, nil
}

package config

import (
	"bytes"
	"fmt"
	"io"
	"maps"

	"github.com/hashicorp/hcl/v2"
)

// Sources keeps the parsed configuration files so that diagnostics can be
// printed with the source lines they point at.
type Sources struct {
	files map[string]*hcl.File
	// origins says where each price row came from, by glob ("" for the
	// fallback).
	origins map[string]string
}

// OriginBuiltIn is the origin of a price row taken from the embedded default.
const OriginBuiltIn = "built-in"

// PriceOrigin says where the price row for glob came from ("" for the
// fallback): "file:line" of its pricing block, OriginBuiltIn, or "" when it
// is unknown (the configuration did not load).
func (s *Sources) PriceOrigin(glob string) string {
	if s == nil {
		return ""
	}
	return s.origins[glob]
}

// Files returns the parsed files by name.
func (s *Sources) Files() map[string]*hcl.File {
	if s == nil {
		return nil
	}
	return maps.Clone(s.files)
}

// mask overwrites the source text of each range with asterisks (line breaks kept, so that
// every position stays valid) in the copies of the files diagnostics are printed from. The
// parsed bodies are untouched.
func (s *Sources) mask(ranges []hcl.Range) {
	for _, r := range ranges {
		f, ok := s.files[r.Filename]
		if !ok || r.Start.Byte < 0 || r.End.Byte > len(f.Bytes) || r.Start.Byte >= r.End.Byte {
			continue
		}
		b := bytes.Clone(f.Bytes)
		for i := r.Start.Byte; i < r.End.Byte; i++ {
			if b[i] != '\n' && b[i] != '\r' {
				b[i] = '*'
			}
		}
		s.files[r.Filename] = &hcl.File{Body: f.Body, Bytes: b, Nav: f.Nav}
	}
}

// WriteDiagnostics prints diags the way HCL tools do (summary, source
// snippet, detail), without colour or wrapping, with each location written
// as "file:line:col" so that editors and terminals can jump to it.
func (s *Sources) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) error {
	var files map[string]*hcl.File
	if s != nil {
		files = s.files
	}
	var buf bytes.Buffer
	tw := hcl.NewDiagnosticTextWriter(&buf, files, 0, false)
	for _, d := range diags {
		buf.Reset()
		if err := tw.WriteDiagnostic(d); err != nil {
			return fmt.Errorf("write diagnostic: %w", err)
		}
		out := buf.Bytes()
		if d.Subject != nil {
			// HCL writes "on FILE line N"; add the column.
			r := d.Subject
			out = bytes.Replace(out,
				fmt.Appendf(nil, "on %s line %d", r.Filename, r.Start.Line),
				fmt.Appendf(nil, "on %s:%d:%d", r.Filename, r.Start.Line, r.Start.Column), 1)
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("write diagnostic: %w", err)
		}
	}
	return nil
}

// FormatDiagnostics returns what WriteDiagnostics would print.
func (s *Sources) FormatDiagnostics(diags hcl.Diagnostics) string {
	var buf bytes.Buffer
	_ = s.WriteDiagnostics(&buf, diags) // writing to a bytes.Buffer cannot fail
	return buf.String()
}

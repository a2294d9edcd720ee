package main

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLineDiffIsUnified(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n"
	new := "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n"
	var buf bytes.Buffer
	writeLineDiff(&buf, "old", "new", old, new)
	want := "--- old\n+++ new\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -11,3 +11,4 @@\n k\n l\n m\n+n\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
	buf.Reset()
	writeLineDiff(&buf, "old", "new", old, old)
	if buf.Len() != 0 {
		t.Errorf("equal texts: got %q, want nothing", buf.String())
	}
	buf.Reset()
	writeLineDiff(&buf, "old", "new", "", "x\n")
	if got := buf.String(); got != "--- old\n+++ new\n@@ -0,0 +1,1 @@\n+x\n" {
		t.Errorf("new file: got %q", got)
	}
}

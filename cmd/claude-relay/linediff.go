package main

import (
	"fmt"
	"io"
	"strings"
)

// writeLineDiff writes a unified diff of two texts (3 lines of context), labelled
// oldName and newName. It writes nothing when they are equal.
func writeLineDiff(w io.Writer, oldName, newName, oldText, newText string) {
	a, b := splitLines(oldText), splitLines(newText)
	ops := diffOps(a, b)
	if !hasChange(ops) {
		return
	}
	fmt.Fprintf(w, "--- %s\n+++ %s\n", oldName, newName)
	const ctx = 3
	var changed []int
	for i, o := range ops {
		if o.kind != ' ' {
			changed = append(changed, i)
		}
	}
	for k := 0; k < len(changed); {
		first, last := changed[k], changed[k]
		for k++; k < len(changed) && changed[k]-last <= 2*ctx; k++ {
			last = changed[k]
		}
		writeHunk(w, ops[max(first-ctx, 0):min(last+ctx+1, len(ops))])
	}
}

type diffOp struct {
	kind       byte // ' ', '-' or '+'
	line       string
	aLine, bLn int // 1-based line numbers in a and b where the op sits
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffOps aligns a and b by their longest common subsequence of lines.
func diffOps(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i], i + 1, j + 1})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, diffOp{'-', a[i], i + 1, j + 1})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j], i + 1, j + 1})
			j++
		}
	}
	return ops
}

func hasChange(ops []diffOp) bool {
	for _, o := range ops {
		if o.kind != ' ' {
			return true
		}
	}
	return false
}

func writeHunk(w io.Writer, ops []diffOp) {
	var na, nb int
	for _, o := range ops {
		if o.kind != '+' {
			na++
		}
		if o.kind != '-' {
			nb++
		}
	}
	aStart, bStart := ops[0].aLine, ops[0].bLn
	if na == 0 {
		aStart--
	}
	if nb == 0 {
		bStart--
	}
	fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@\n", aStart, na, bStart, nb)
	for _, o := range ops {
		line := o.line
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		fmt.Fprintf(w, "%c%s", o.kind, line)
	}
}

// Package codecheck holds tests over the source tree itself: rules of how the code is
// written that no reviewer should have to count by hand, such as the 90-line bound on the
// functions of sidecar/, controlplane/, config/, store/ and plugins/.
package codecheck

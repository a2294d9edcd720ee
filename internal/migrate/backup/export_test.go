package backup

import (
	"compress/gzip"
	"io"
)

// ReadRaw returns a backup file's JSON as it is written, secrets still sealed.
func ReadRaw(r io.Reader) (string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(zr)
	return string(b), err
}
